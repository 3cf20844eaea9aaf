"""The one HTML writer and the one Markdown writer: escaping, and compare's pages through them (no sweep needed)."""

from pathlib import Path

from optbench.report.compare import DRIFT, render
from optbench.report.write import environment, html, md_table, md_text, num

EVIL = "v<i>x|y</i>'q\"\nz"


def _cmp(vid: str = EVIL) -> dict:
    row = {"variant_id": vid, "status_a": "ok", "status_b": "ok", "ratio": 2.0, "noise": 0.01, "p50_a": 1.0,
           "p50_b": 2.0, "mark": "slower", "reason": "difference +100% > effect 5% <b>", **{f"{m}_change": None
                                                                                        for m in DRIFT}}
    failed = {"variant_id": "torch.fp32.none.bs1", "status_a": "ok", "status_b": "failed", "ratio": None,
              "noise": None, "mark": "", "reason": "", **{f"{m}_change": 0.5 for m in DRIFT}}
    return {"a": {"dir": Path("runs/a<b>")}, "b": {"dir": Path("runs/b|c")}, "rows": [row, failed],
            "added": [EVIL], "removed": [], "effect": 0.05, "specs_differ": True}


def test_markdown_cells_are_escaped_and_one_line():
    # a '<' that could open a tag is backslash-escaped (GitHub shows it as '<'); no entity reads '&lt;' as plain text
    assert md_text(EVIL) == "v\\<i>x\\|y\\</i>'q\" z"
    assert md_text("latency_ms_p99 <= 5 and drift 0.1 > budget 0.01") == "latency_ms_p99 <= 5 and drift 0.1 > budget 0.01"
    table = md_table(["a", "b"], [[EVIL, "1"], ["plain", "2"]])
    assert table == f"| a | b |\n|---|---|\n| {md_text(EVIL)} | 1 |\n| plain | 2 |\n"
    assert md_table(["a"], []) == "| a |\n|---|\n"


def test_one_environment_escapes_html():
    assert environment() is environment()
    assert environment().autoescape is not False
    assert num(float("nan")) == "–" and num(0.123, ".1%") == "12.3%" and num(None) == "–"
    assert {"base.html.j2", "report.html.j2", "compare.html.j2"} <= set(environment().list_templates())


def test_compare_html_escapes_user_text_and_shares_the_page():
    page = render(_cmp(), "html")
    assert "<i>" not in page and page.count("<b>") == 1  # the one <b> is the page's own, below
    assert "v&lt;i&gt;x|y&lt;/i&gt;&#39;q&#34;" in page and "runs/a&lt;b&gt;" in page
    assert "class='slower'" in page and "title='difference +100% &gt; effect 5% &lt;b&gt;'" in page
    assert "<b>The runs come from different specs.</b>" in page
    assert "Content-Security-Policy" in page and page.startswith("<!doctype html>")  # the report's base page
    assert "<td>+0.5</td>" in page and "<td>–</td>" in page
    assert "<h2>Removed in B</h2>\n<ul><li>none</li></ul>" in page


def test_compare_markdown_escapes_user_text():
    md = render(_cmp(), "md")
    lines = md.splitlines()
    assert lines[0] == "## optbench compare: a\\<b> → b\\|c"
    assert lines[2] == "| variant | p50 A ms | p50 B ms | B/A | paired interval | noise | verdict |"
    assert lines[4] == f"| {md_text(EVIL)} | 1.000 | 2.000 | 2.000 |  | 1.0% | slower |"  # no paired interval: not re-timed
    assert lines[5] == "| torch.fp32.none.bs1 | – | – | – |  | – |  |"
    assert lines[-2:] == [f"added: {md_text(EVIL)}", "removed: none"] and md.endswith("\n")


def test_report_page_extends_the_base():
    page = html("base.html.j2")
    assert page.startswith("<!doctype html>") and "<title></title>" in page and page.endswith("</html>")


def test_compare_terminal_table_shows_markup_as_text():
    cmp = _cmp("v[bold]x[/bold]")
    cmp["rows"][0]["reason"] = "[red]why"
    out = render(cmp, "table")
    assert "v[bold]x[/bold]" in out and "[red]why" in out
