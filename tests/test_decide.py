"""What to ship: speedups from the quiet-round levels the latency gate reads, an unreliable ratio said as such in the
line itself (never a headline number), accuracy judged on random inputs said in the line."""

import pandas as pd

from optbench.report.build import enrich
from optbench.report.decide import decisions


def _row(vid: str, backend: str, precision: str, rounds: list[float], busy: str | None = None, **extra) -> dict:
    rounds_sorted = sorted(rounds)
    return {"variant_id": vid, "status": "ok", "backend": backend, "backend_name": backend, "device": "cpu",
            "precision": precision, "transform": "none", "int8": None, "fp16": None, "batch_size": 1, "shape": {},
            "latency_ms_p50": extra.pop("p50", rounds_sorted[len(rounds) // 2]), "latency_ms_rounds": rounds,
            "busy": busy, "warnings": [], "reference": "torch fp32 cpu", "reference_backend": "torch",
            "drift_rel_l2": 1e-3, "worst_output": "logits", **extra}


def _sentence(rows: list[dict], random_inputs: bool = False) -> str:
    df = enrich(pd.DataFrame(rows), spread_warn=0.05)
    (d,) = decisions(df, {}, [], "torch", spread_warn=0.05, random_inputs=random_inputs)
    return d["sentence"]


def test_a_reference_with_one_quiet_round_among_busy_ones_headlines_no_speedup():
    """The torch fp32 reference's rounds 80, 76, 80, 80, 0.33 ms (p50 71.95): 71.95 / 0.0203 read as 3548x."""
    ref = _row("torch.fp32.none.bs1", "torch", "fp32", [79.97, 76.09, 79.94, 80.0, 0.33], p50=71.95)
    best = _row("onnxruntime.int8.none.bs1", "onnxruntime", "int8", [0.0203] * 5,
                busy="other processes used 1.10 of 2 CPUs")
    line = _sentence([ref, best])
    assert "ship onnxruntime.int8.none.bs1" in line
    assert "3548" not in line and "x torch fp32" not in line, line
    assert "speedup over torch fp32 unreliable" in line
    assert "torch.fp32.none.bs1's round medians spread 100% > 5%" in line and "0.33" in line
    assert "onnxruntime.int8.none.bs1 was timed on a busy machine (other processes used 1.10 of 2 CPUs)" in line


def test_the_speedup_is_the_ratio_of_quiet_levels_of_both_sides():
    """Steady rounds: the ratio of the quiet rounds' medians (the fastest third, at least two), not of p50s."""
    ref = _row("torch.fp32.none.bs1", "torch", "fp32", [10.0, 10.1, 10.2, 10.3, 10.4], p50=10.2)
    best = _row("onnxruntime.fp32.none.bs1", "onnxruntime", "fp32", [2.0, 2.02, 2.04, 2.06, 2.08], p50=2.04)
    line = _sentence([ref, best])
    assert f"{10.05 / 2.01:.2f}x torch fp32 (quiet rounds)" in line, line
    assert "random inputs" not in line


def test_the_line_says_when_accuracy_was_judged_on_random_inputs():
    ref = _row("torch.fp32.none.bs1", "torch", "fp32", [10.0, 10.1])
    line = _sentence([ref, _row("onnxruntime.int8.none.bs1", "onnxruntime", "int8", [1.0, 1.01])], random_inputs=True)
    assert "accuracy judged on random inputs (data: synthetic)" in line
