"""Constraints and budgets are checked before a sweep or a search runs: a column no row holds as a number, or a
bound that is not a finite number, is one line and exit 2 (each used to run everything and then fail or pass all)."""

from __future__ import annotations

import pytest

from optbench.cli import main
from tests.conftest import ROOT, write_spec

SPEC = """\
name: constrained
model: {source: python, entrypoint: "%s", kwargs: {epochs: 1, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 32, eval: 64}
variants: {precision: [fp32, int8], batch_size: [1], int8: [{samples: 32}]}
backends: [onnxruntime]
measure: {warmup_s: 0.01, min_iters: 2, min_duration_s: 0.01, rounds: 1, processes: 1}
""" % (ROOT / "experiments" / "models" / "digits.py:build")


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.mark.parametrize("command", ["run", "tune"])
def test_a_constraint_on_a_column_no_row_has_stops_before_anything_runs(tmp_path, command, capsys):
    spec = write_spec(tmp_path, SPEC + "search: {trials: 2, processes: 1}\n")
    code = main([command, str(spec), "--run-dir", str(tmp_path / "run"), "--no-history", "--quiet", "--no-report",
                 "--constraint", "nosuch_col <= 5"])
    assert code == 2 and not (tmp_path / "run").exists()
    assert "the rows have no column 'nosuch_col'" in _one_line(capsys)


@pytest.mark.parametrize("extra, says", [
    ("constraints: ['latency_ms_p99x <= 5']", "did you mean 'latency_ms_p99'?"),
    ("constraints: ['backend <= 5']", "column 'backend' holds text, not numbers"),
    ("search: {time_budget_s: .nan}", "search.time_budget_s"),
    ("search: {time_budget_s: .inf}", "search.time_budget_s"),
    ("search: {budgets: {int8: {rel_l2_max: .nan}}}", "search.budgets.int8.rel_l2_max"),
    ("budgets: {fp32: {rel_l2_max: .nan}}", "budgets.fp32.rel_l2_max"),
])
def test_bounds_that_no_variant_can_meet_are_refused_when_the_spec_is_read(tmp_path, extra, says, capsys):
    spec = write_spec(tmp_path, SPEC + extra + "\n")
    assert main(["plan", str(spec)]) == 2
    assert says in _one_line(capsys)


def test_constraints_on_numeric_columns_and_custom_metrics_pass(tmp_path):
    from optbench.constraint import parse_constraint

    assert str(parse_constraint("latency_ms_p99 <= 5")) == "latency_ms_p99 <= 5"
    assert parse_constraint("serving_peak_qps >= 100").column == "serving_peak_qps"
    assert parse_constraint("x_recall >= 0.9").column == "x_recall"  # a custom task's metric
