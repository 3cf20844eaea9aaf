"""A report section never ends the command that writes the report: a section that fails is left out with its
reason, and a variant explain cannot read is named with why, the report written around it."""

import json
import shutil

import pytest

from optbench.cli import main
from tests.conftest import ROOT, write_spec

SPEC = """\
name: sections
model: {source: python, entrypoint: "%s", kwargs: {epochs: 1, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 16, eval: 32}
variants: {precision: [fp32], batch_size: [1]}
backends: [{name: torch, device: cpu}]
measure: {mode: judge}
""" % (ROOT / "experiments" / "models" / "digits.py:build")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("sections")
    run_dir = tmp / "run"
    assert main(["run", str(write_spec(tmp, SPEC)), "--run-dir", str(run_dir), "--quiet", "--no-report"]) == 0
    return run_dir


def _with_lowered_int8_row(run, tmp_path):
    """The run with an ExecuTorch int8 row that fails its accuracy budget: the report's explain section picks it,
    and ExecuTorch runs a program it lowered the module to, which explain cannot hook (it once built an ExecuTorch
    session without a sample and `optbench run` ended in a TypeError with no report)."""
    dst = tmp_path / "run"
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("logs"))
    rows = [json.loads(x) for x in (dst / "results.jsonl").read_text().splitlines()]
    row = next(r for r in rows if r["status"] == "ok")
    vid = "executorch.int8-minmax-pc-u8.none.bs1-00000000"
    rows.append({**row, "variant_id": vid, "backend": "executorch", "backend_name": "executorch", "precision": "int8",
                 "drift_rel_l2": 0.9, "drift_cosine": 0.2, "top1_agreement": 0.1, "task_accuracy": 0.1,
                 "int8": {"mode": "static"}, "conversion": []})
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst, vid


def test_explain_says_why_it_cannot_read_a_lowered_program_and_the_report_is_written(tiny_run, tmp_path, capsys):
    from optbench.errors import OptbenchError
    from optbench.explain.variant import explain_variant

    run, vid = _with_lowered_int8_row(tiny_run, tmp_path)
    with pytest.raises(OptbenchError, match="it ran a program executorch makes from the torch module"):
        explain_variant(run, vid)
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text()
    assert f"<h3>{vid}</h3>" in html and "not explained: variant &#39;executorch." in html
    assert "so it does not explain this variant" in html
    assert "Traceback" not in capsys.readouterr().err


def test_a_failing_section_is_left_out_with_its_reason(tiny_run, tmp_path, monkeypatch):
    import optbench.report.render as render

    def broken(run_dir):
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(render, "search_section", broken)
    assert main(["report", str(tiny_run), "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert 'id="sections-skipped"' in html
    assert "search: TypeError: &#39;NoneType&#39; object is not subscriptable" in html
    assert 'id="ship"' in html and 'id="summary"' in html  # the rest of the report stands
