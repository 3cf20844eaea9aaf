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
    assert md.startswith("## optbench: small") and "| variant_id |" in md
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
    from optbench.report import enrich, load_run

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
    assert all(re.search(r": ship \S+: p50 [\d.]+ ms.*, [\d.]+x torch fp32", x) for x in lines), lines
    assert main(["report", str(small_run), "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert html.index('id="ship"') < html.index('id="summary"')
    assert main(["report", str(small_run), "--format", "md", "-o", str(tmp_path / "c.md"),
                 "--constraint", "latency_ms_p50 <= 0.000001"]) == 0
    assert "no variant passes every accuracy check and meets latency_ms_p50 &lt;= 1e-06" in (tmp_path / "c.md").read_text()
    capsys.readouterr()
    assert main(["report", str(small_run), "--constraint", "latency_p50 <= 5", "-o", str(tmp_path / "x.html")]) == 2
    assert "the rows have no column 'latency_p50'" in capsys.readouterr().err
    assert main(["report", str(small_run), "--constraint", "p50 is small", "-o", str(tmp_path / "x.html")]) == 2


def test_a_failing_variant_is_never_recommended(small_run, tmp_path):
    from optbench.report import enrich, load_run
    from optbench.report.decide import decisions

    run = load_run(small_run)
    df = enrich(run["df"])
    first = decisions(df, {}, [], "torch")
    best = {d["batch"]: d["best"]["variant_id"] for d in first}
    again = decisions(df, {vid: ["planted"] for vid in best.values()}, [], "torch")
    for d in again:
        assert d["best"]["variant_id"] != best[d["batch"]]
