"""Reports: self-contained HTML with plots and the Pareto frontier, escaping, compare, md/csv."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from optbench.cli import main


def test_html_report_is_self_contained(small_run):
    html = (small_run / "report.html").read_text()
    assert html.count("<img") >= 4
    assert "data:image/svg+xml;base64," in html
    assert not re.search(r"(src|href)=\"https?:", html)
    assert "Pareto frontier" in html and "Best variant under each accuracy budget" in html
    assert "skipped" in html  # torch int8 rows are listed with the reason
    assert 'class="pass"' in html


def test_strings_from_the_spec_are_escaped(small_run, tmp_path):
    run = tmp_path / "evil"
    shutil.copytree(small_run, run, ignore=shutil.ignore_patterns("work", "logs"))
    spec = (run / "spec.yaml").read_text().replace("name: small", "name: <script>alert(1)</script>")
    (run / "spec.yaml").write_text(spec)
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines()]
    rows[0]["error"] = "<img src=x onerror=alert(2)>"
    rows[0]["status"] = "failed"
    (run / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html
    assert "<img src=x" not in html
    assert "failed" in html  # a run with failed variants still renders and lists them


def test_markdown_and_csv(small_run, tmp_path):
    assert main(["report", str(small_run), "--format", "md", "-o", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("## optbench: small") and "| variant | p50 ms |" in md
    assert main(["report", str(small_run), "--format", "csv", "-o", str(tmp_path / "r.csv")]) == 0
    assert "latency_ms_p50" in (tmp_path / "r.csv").read_text().splitlines()[0]


def _planted(run, tmp_path, factor):
    dst = tmp_path / f"x{factor}"
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("work", "logs"))
    rows = [json.loads(x) for x in (dst / "results.jsonl").read_text().splitlines()]
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:  # rounds of a quiet machine, so that only the planted change is beyond the noise
        r["latency_ms_rounds"], r["busy"] = [r["latency_ms_p50"] * (1 + 0.002 * i) for i in range(5)], None
    target = ok[0]
    target["latency_ms_rounds"] = [s * factor for s in target["latency_ms_rounds"]]
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst, target["variant_id"]


def test_compare_marks_only_real_differences(small_run, tmp_path, capsys):
    assert main(["compare", str(small_run), str(small_run), "--format", "md", "-o", str(tmp_path / "same.md")]) == 0
    same = (tmp_path / "same.md").read_text()
    assert "slower" not in same and "faster" not in same
    base, _ = _planted(small_run, tmp_path, 1.0)
    slow, vid = _planted(small_run, tmp_path, 2.0)
    assert main(["compare", str(base), str(slow), "--format", "md", "-o", str(tmp_path / "slow.md")]) == 0
    marked = [line for line in (tmp_path / "slow.md").read_text().splitlines() if "| slower |" in line]
    assert len(marked) == 1 and vid in marked[0] and "| 2.000 |" in marked[0]
    assert main(["compare", str(base), str(slow), "-o", str(tmp_path / "cmp.html")]) == 0
    assert "class='slower'" in (tmp_path / "cmp.html").read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(small_run, tmp_path):
    shot = tmp_path / "shot.png"
    url = Path(small_run / "report.html").resolve().as_uri()
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--enable-logging=stderr", "--v=0", "--dump-dom", url],
                         capture_output=True, text=True, timeout=120)
    assert "Pareto frontier" in dom.stdout
    console_errors = [x for x in dom.stderr.splitlines() if "CONSOLE" in x and "ERROR" in x.upper()]
    assert not console_errors, console_errors
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,3000", f"--screenshot={shot}", url],
                   capture_output=True, timeout=120)
    from PIL import Image

    img = Image.open(shot).convert("L")
    lo, hi = img.getextrema()
    assert hi - lo > 100  # not blank
    # every image decodes: check each data URI with matplotlib's reader via PIL-free SVG parse
    html = (small_run / "report.html").read_text()
    import base64
    import xml.etree.ElementTree as ET

    for uri in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', html):
        ET.fromstring(base64.b64decode(uri))


def test_speedup_against_the_reference_runtime_is_filled(small_run):
    from optbench.report.build import enrich, load_run

    df = enrich(load_run(small_run)["df"])
    ok = df[df.status == "ok"]
    assert ok.speedup.notna().all()
    ref = ok[(ok.backend == "torch") & (ok.precision == "fp32") & (ok["transform"] == "none")]
    assert (ref.speedup == 1.0).all()


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("optbench ")


def test_the_report_opens_with_what_to_ship(small_run, tmp_path, capsys):
    """A recommendation per batch with a numeric speedup, first in Markdown and HTML; constraints narrow it."""
    import re

    assert main(["report", str(small_run), "--format", "md", "-o", str(tmp_path / "r.md")]) == 0
    md = (tmp_path / "r.md").read_text()
    ship = md.split("### What to ship")[1].split("|")[0]
    lines = [x for x in ship.splitlines() if x.startswith("- ")]
    assert [re.match(r"- At batch (\d+)", x).group(1) for x in lines] == ["1", "16"]
    # a number from both sides' quiet rounds, or, where a side was timed busy or its rounds spread, the reason
    assert all(re.search(r": ship \S+: p50 [\d.]+ ms.*, ([\d.]+x torch fp32 \(quiet rounds\)|speedup over torch fp32 "
                         r"unreliable \(.+(timed on a busy machine|round medians spread))", x) for x in lines), lines
    assert main(["report", str(small_run), "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert html.index('id="ship"') < html.index('id="summary"')
    assert main(["report", str(small_run), "--format", "md", "-o", str(tmp_path / "c.md"),
                 "--constraint", "latency_ms_p50 <= 0.000001"]) == 0
    assert "no variant passes every accuracy check and meets latency_ms_p50 <= 1e-06" in (tmp_path / "c.md").read_text()
    capsys.readouterr()
    assert main(["report", str(small_run), "--constraint", "latency_p50 <= 5", "-o", str(tmp_path / "x.html")]) == 2
    assert "the rows have no column 'latency_p50'" in capsys.readouterr().err
    assert main(["report", str(small_run), "--constraint", "p50 is small", "-o", str(tmp_path / "x.html")]) == 2


def test_a_failing_variant_is_never_recommended(small_run, tmp_path):
    from optbench.report.build import enrich, load_run
    from optbench.report.decide import decisions

    run = load_run(small_run)
    df = enrich(run["df"])
    first = decisions(df, {}, [], "torch")
    best = {d["batch"]: d["best"]["variant_id"] for d in first}
    again = decisions(df, {vid: ["planted"] for vid in best.values()}, [], "torch")
    for d in again:
        assert d["best"]["variant_id"] != best[d["batch"]]


def _edited(run, tmp_path, name, edit):
    dst = tmp_path / name
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("work", "logs"))
    rows = [json.loads(x) for x in (dst / "results.jsonl").read_text().splitlines()]
    edit(rows)
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def test_tables_for_humans(small_run, tmp_path, capsys):
    """ok rows grouped by point, fastest first; filtered rows collapsed to a count; failed rows with the stage
    that failed; throughput without scientific notation; sizes in MiB; unstable rows marked in place."""
    def edit(rows):
        ok = [r for r in rows if r["status"] == "ok"]
        ok[0]["throughput_items_s"] = 123456.7
        ok[1]["warnings"] = ["unstable: round medians spread 12.0% > 5% (1 2 ms)"]
        ok[2].update(status="failed", error="ValueError: planted", failed_stage="export (int8)")
        for i in range(3):
            rows.append({**ok[3], "variant_id": f"torch.fp16.none.bs{i}-filtered", "status": "skipped",
                         "error": f"fp16.bs{i} restricted by options.only to ['fp32.*']"})
    run = _edited(small_run, tmp_path, "human", edit)
    from optbench.report.build import load_run
    from optbench.report.render import context, render_md

    ctx = context(load_run(run))
    assert [g["title"] for g in ctx["groups"]] == ["batch 1", "batch 16"]
    columns = ctx["columns"]
    p50 = columns.index("p50 ms")
    for g in ctx["groups"]:
        values = [float(row[p50]["sort"]) for row in g["rows"]]
        assert values == sorted(values)
    cells = [c for g in ctx["groups"] for row in g["rows"] for c in row]
    assert "123,457" in [c["text"] for c in cells]
    assert not any(re.search(r"\d[eE][+-]?\d", c["text"]) for g in ctx["groups"] for row in g["rows"]
                   for c in [row[columns.index("items/s")]])
    assert any(c["cls"] == "noisy" and "⚠" in c["text"] and "unstable" in c["title"] for c in cells)
    assert "model MiB" in columns
    assert ctx["failed"] and ctx["failed"][0]["stage"] == "export (int8)"
    assert ctx["skipped"]["filter"]["count"] == 3 and ctx["skipped"]["filter"]["reasons"] == [("fp16", 3)]
    html = (run / "report.html") if (run / "report.html").exists() else None
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert "3 left out by the spec&#39;s <code>only:</code> filters" in html or "3 left out by the spec" in html
    assert "export (int8)" in html
    md = render_md(load_run(run))
    assert "### batch 1" in md and "### batch 16" in md and "### Failed" in md and "at export (int8)" in md
    assert "- 3 left out by the spec's `only:` filters" in md and "filtered" not in md.split("### Skipped")[0]


def test_best_under_budgets_is_per_point(small_run):
    from optbench.report.build import best_under_budgets, enrich, load_run

    df = enrich(load_run(small_run)["df"])
    ok = df[df.status == "ok"]
    best = best_under_budgets(ok, "task_accuracy", None)
    assert {b["point"] for b in best} == {"batch 1", "batch 16"}
    for b in best:
        assert f".bs{b['point'].split()[1]}-" in b["variant"]
    for a, b in zip(best, best[1:]):  # a looser budget picking the same variant widens the line, not repeats it
        assert a["point"] != b["point"] or a["variant"] != b["variant"]
        assert b["budget"] > a["budget_to"] or a["point"] != b["point"]


def test_pareto_falls_back_to_drift_when_accuracy_is_flat():
    import pandas as pd

    from optbench.report.plots import PALETTE, colours, frontier_of, pareto_metric

    flat = pd.DataFrame({"top1_agreement": [1.0, 1.0, 1.0], "drift_rel_l2": [0.0, 1e-3, 1e-2],
                         "ms_per_item": [3.0, 2.0, 1.0]})
    assert pareto_metric(flat, "top1_agreement")[:2] == ("drift_rel_l2", False)
    assert list(frontier_of(flat, "drift_rel_l2", False)["ms_per_item"]) == [1.0, 2.0, 3.0]
    noise = pd.DataFrame({"drift_rel_l2": [5.33e-7, 4.95e-7, 1e-8], "ms_per_item": [1.0, 2.0, 3.0]})
    assert list(frontier_of(noise, "drift_rel_l2", False)["ms_per_item"]) == [1.0, 3.0]  # 4.95e-7: same noise
    varied = flat.assign(top1_agreement=[1.0, 0.99, 0.9])
    assert pareto_metric(varied, "top1_agreement")[:2] == ("top1_agreement", True)
    twelve = colours([f"series {i}" for i in range(12)])
    assert len(set(twelve.values())) == 12 and len(set(PALETTE)) >= 12


def test_compare_prints_a_terminal_table_by_default(small_run, capsys):
    assert main(["compare", str(small_run), str(small_run)]) == 0
    out = capsys.readouterr().out
    assert "<html" not in out and "verdict" in out and "latency:" in out.splitlines()[-1]


def test_report_markdown_goes_to_stdout_without_o(small_run, capsys):
    assert main(["report", str(small_run), "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## optbench: small") and "### What to ship" in out


def test_torch_fp16_bytes_are_those_after_the_cast():
    import torch

    from optbench.backends.torch_eager import TorchSession

    m = torch.nn.Linear(64, 64)
    fp32 = TorchSession(m, "cpu", torch.float32, False, False).artifact_bytes
    half = TorchSession(torch.nn.Linear(64, 64).to(torch.float16), "cpu", torch.float16, False, False).artifact_bytes
    assert fp32 == (64 * 64 + 64) * 4 and half == fp32 // 2


def test_rows_carry_rss_above_the_idle_worker(small_run):
    from optbench.store import final_rows

    ok = [r for r in final_rows(small_run).values() if r["status"] == "ok"]
    for r in ok:
        assert 0 < r["idle_rss_bytes"] < r["peak_rss_bytes"]
        if r["settings"]["host_memory"].startswith("host RSS delta: the peak above the"):  # from the artifact ready
            assert 0 <= r["rss_delta_bytes"] < r["peak_rss_bytes"]
        else:
            assert r["rss_delta_bytes"] == r["peak_rss_bytes"] - r["idle_rss_bytes"]
        assert r["wall_s"] > 0


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_what_to_ship_is_in_the_first_viewport(small_run, tmp_path):
    """Rendered at 1200x800 in headless Chromium, the decision list ends above the fold. The measuring script is
    added to a copy of the report here (the report's CSP allows inline script); Chromium writes what it measured
    into the DOM it dumps."""
    page = tmp_path / "report.html"
    probe = ("<script>addEventListener('load', function () { var r = document.getElementById('ship')"
             ".getBoundingClientRect(); document.body.setAttribute('data-ship', r.top + ',' + r.bottom + ',' + "
             "innerHeight + ',' + innerWidth); });</script></body>")
    page.write_text((small_run / "report.html").read_text().replace("</body>", probe))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--window-size=1200,800", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    top, bottom, height, width = (float(x) for x in re.search(r'data-ship="([^"]+)"', dom).group(1).split(","))
    assert width == 1200 and 0 < top < bottom <= height, (top, bottom, height)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_results_table_fits_1280_pixels(small_run, tmp_path):
    """At 1280 px the page never scrolls sideways and the results table ends inside the window, its verdict
    column second (measured by Chromium in a copy of the report, as above)."""
    page = tmp_path / "report.html"
    probe = ("<script>addEventListener('load', function () { var t = document.querySelector('#summary')"
             ".getBoundingClientRect(); var h = document.querySelectorAll('#summary thead th');"
             "document.body.setAttribute('data-fit', document.documentElement.scrollWidth + ',' + innerWidth + ',' + "
             "t.right + ',' + h[1].textContent.trim()); });</script></body>")
    page.write_text((small_run / "report.html").read_text().replace("</body>", probe))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--window-size=1280,900", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.resolve().as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    scroll, inner, right, second = re.search(r'data-fit="([^"]+)"', dom).group(1).split(",", 3)
    assert float(scroll) <= float(inner) == 1280 and float(right) <= 1280, (scroll, inner, right)
    assert second == "accuracy verdict"
