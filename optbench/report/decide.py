"""What should I ship: the recommended variant per (batch, shape) point, under the budgets and constraints.

At each point the recommendation is the fastest variant (p50) that passes every accuracy check (every output,
task metrics, collapse guard, as ``optbench check`` decides) and meets every constraint (``constraints:`` in
the spec, ``--constraint`` on the command line: ``COLUMN OP NUMBER`` over row columns in their units, e.g.
``latency_ms_p99 <= 5``). It comes with its speedup against the reference runtime at fp32 at the same point
and against the fastest fp32 of any backend there, its accuracy cost, its noise flag, and the runner-up.

Speedups are ratios of quiet-round levels, the levels the latency gate compares (``optbench.measure.verdict``),
never of p50s: one interference-free round among slow ones must not headline a 3548x. A side timed on a busy
machine, or whose round medians spread beyond ``measure.spread_warn``, makes the ratio unreliable, and the
sentence says so with the reason instead of a number. Accuracy judged on random inputs (``data: synthetic``, what
a spec-less run uses) is said in the sentence too.
"""

from __future__ import annotations

import math

import pandas as pd

from optbench.backends import get_backend, reference_backend_of
from optbench.check import check_constraints
from optbench.constraint import Constraint, parse_constraint  # noqa: F401 (read from here too)
from optbench.errors import OptbenchError
from optbench.report.build import point_title, ratio
from optbench.row import codes


def decisions(df: pd.DataFrame, failing: dict[str, list[str]], constraints: list[Constraint],
              reference: dict | str, spread_warn: float | None = None, random_inputs: bool = False) -> list[dict]:
    """One decision per (batch, shape) point of the enriched rows ``df`` (enriched with the same ``spread_warn``);
    ``random_inputs``: the run's data was random (data: synthetic)."""
    from optbench.spec.defaults import config_defaults

    if spread_warn is None:
        spread_warn = float(config_defaults("measure")["spread_warn"])
    ok = df[df["status"] == "ok"]
    numeric = "a numeric column such as latency_ms_p50, latency_ms_p99, gpu_peak_bytes, model_bytes, " \
              "throughput_items_s, drift_rel_l2"
    for c in constraints:
        if c.column not in df.columns:
            raise OptbenchError(f"constraint '{c}': the rows have no column '{c.column}'", expected=numeric)
        values = df.loc[df["status"] == "ok", c.column].dropna()
        if len(values) and not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            raise OptbenchError(f"constraint '{c}': column '{c.column}' holds text, not numbers "
                                f"(e.g. {values.iloc[0]!r})", expected=numeric)
    out = []
    for (batch, shape), group in ok.groupby(["batch_size", "shape_label"], sort=True):
        rows = group.sort_values("latency_ms_p50").to_dict("records")
        fit = [r for r in rows if r["variant_id"] not in failing and
               all(res.passed for res in check_constraints(r, constraints))]
        fp32 = [r for r in rows if r["precision"] == "fp32" and r.get("transform") == "none"]
        d = {"batch": int(batch), "shape": shape, "constraints": [str(c) for c in constraints],
             "candidates": len(rows), "passing": len(fit), "best": fit[0] if fit else None, "runner_up": fit[1] if len(fit) > 1 else None,
             "fastest_fp32": fp32[0] if fp32 else None, "spread_warn": spread_warn, "random_inputs": random_inputs,
             "fastest": rows[0] if rows else None}
        if fit and rows[0]["variant_id"] != fit[0]["variant_id"]:
            d["passed_over"] = why_not(rows[0], failing, constraints)
        d["sentence"] = sentence(d, reference, failing)
        out.append(d)
    return out


def why_not(row: dict, failing: dict[str, list[str]], constraints: list[Constraint]) -> str:
    """Why a faster variant is not the one to ship: the first accuracy check it fails, else the first constraint."""
    if row["variant_id"] in failing:
        return failing[row["variant_id"]][0]
    missed = [res.message for res in check_constraints(row, constraints) if not res.passed]
    return missed[0] if missed else "it fails a check"


def _timed(r: dict) -> bool:
    v = r.get("latency_ms_p50")
    return isinstance(v, (int, float)) and not math.isnan(v)


def _noise(r: dict) -> str:
    words = {"unstable": "unstable", "busy": "machine busy"}
    flags = [words[c] for c in codes(r) if c in words]
    return f" ({', '.join(flags)})" if flags else ""


def _accuracy(r: dict) -> str:
    parts = []
    if r.get("worst_output") and isinstance(r.get("drift_rel_l2"), float):
        parts.append(f"worst output '{r['worst_output']}' rel. L2 {r['drift_rel_l2']:.2g}")
    for col, label in (("task_accuracy", "task accuracy"), ("top1_agreement", "top-1 agreement"),
                       ("det_f1", "detection F1"), ("ctc_exact_rate", "exact strings"), ("dense_iou", "map IoU"),
                       ("retrieval_agreement", "retrieval agreement")):
        v = r.get(col)
        if isinstance(v, float) and not math.isnan(v):
            parts.append(f"{label} {v:.3g}")
            break
    return "; ".join(parts) or "no accuracy figures"


def sentence(d: dict, reference: dict | str, failing: dict[str, list[str]]) -> str:
    where = point_title(d["batch"], d["shape"])
    under = f" under {', '.join(d['constraints'])}" if d["constraints"] else ""
    best = d["best"]
    if best is None:
        meets = f" and meets {', '.join(d['constraints'])}" if d["constraints"] else ""
        return (f"At {where}: no variant passes every accuracy check{meets} ({d['candidates']} measured here; "
                f"{len(failing)} variant(s) of the run fail an accuracy check).")
    judged = "; accuracy judged on random inputs (data: synthetic), not the model's real inputs" \
        if d.get("random_inputs") else ""
    if not _timed(best):
        return (f"At {where}{under}: not timed (measure.mode: judge): {d['passing']} of {d['candidates']} variant(s) "
                f"pass every accuracy check{judged}; time them (measure.mode: full) to choose one on speed.")
    speed, note = best.get("speedup"), best.get("speedup_note")
    named = reference if isinstance(reference, dict) else {"reference": str(reference)}
    ref_name = get_backend(reference_backend_of(named)).reference_title
    if not isinstance(speed, float) or math.isnan(speed):
        vs_ref = f"no {ref_name} fp32 row to compare with"
    elif isinstance(note, str) and note:
        vs_ref = f"speedup over {ref_name} fp32 unreliable ({note})"
    else:
        vs_ref = f"{speed:.2f}x {ref_name} fp32 (quiet rounds)"
    vs_fast = ""
    fast = d["fastest_fp32"]
    if fast is not None and fast["variant_id"] != best["variant_id"]:
        times, why = ratio(fast, best, d.get("spread_warn", 0.05))
        vs_fast = f", against the fastest fp32 ({fast['variant_id']}) unreliable too" if why and note else \
            f", against the fastest fp32 ({fast['variant_id']}) unreliable ({why})" if why else \
            f", {times:.2f}x the fastest fp32 ({fast['variant_id']})"
    runner = d["runner_up"]
    tail = f" Runner-up: {runner['variant_id']} ({runner['latency_ms_p50']:.3g} ms)." if runner else ""
    if d.get("passed_over"):  # the fastest at this point fails something: say what, or the choice reads arbitrary
        fastest = d["fastest"]
        tail = (f" Faster but passed over: {fastest['variant_id']} ({fastest['latency_ms_p50']:.3g} ms): "
                f"{d['passed_over']}.") + tail
    return (f"At {where}{under}: ship {best['variant_id']}: p50 {best['latency_ms_p50']:.3g} ms{_noise(best)}, "
            f"{vs_ref}{vs_fast}; {_accuracy(best)}{judged}.{tail}")
