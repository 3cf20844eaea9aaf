"""What should I ship: the recommended variant per (batch, shape) point, under the budgets and constraints.

At each point the recommendation is the fastest variant (p50) that passes every accuracy check (every output,
task metrics, collapse guard, as ``optbench check`` decides) and meets every constraint (``constraints:`` in
the spec, ``--constraint`` on the command line: ``COLUMN OP NUMBER`` over row columns in their units, e.g.
``latency_ms_p99 <= 5``). It comes with its speedup against the reference runtime at fp32 at the same point
and against the fastest fp32 of any backend there, its accuracy cost, its noise flag, and the runner-up.
"""

from __future__ import annotations

import math

import pandas as pd

from optbench.backends import get_backend, reference_backend_of
from optbench.check import check_constraints
from optbench.constraint import Constraint, parse_constraint  # noqa: F401 (read from here too)
from optbench.errors import OptbenchError
from optbench.report.build import point_title
from optbench.row import codes


def decisions(df: pd.DataFrame, failing: dict[str, list[str]], constraints: list[Constraint],
              reference: dict | str) -> list[dict]:
    """One decision per (batch, shape) point of the enriched rows ``df``."""
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
             "fastest_fp32": fp32[0] if fp32 else None}
        d["sentence"] = sentence(d, reference, failing)
        out.append(d)
    return out


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
    if not _timed(best):
        return (f"At {where}{under}: not timed (measure.mode: judge): {d['passing']} of {d['candidates']} variant(s) "
                f"pass every accuracy check; time them (measure.mode: full) to choose one on speed.")
    speed = best.get("speedup")
    named = reference if isinstance(reference, dict) else {"reference": str(reference)}
    ref_name = get_backend(reference_backend_of(named)).reference_title
    vs_ref = f"{speed:.2f}x {ref_name} fp32" if isinstance(speed, float) and not math.isnan(speed) else \
        f"no {ref_name} fp32 row to compare with"
    fast = d["fastest_fp32"]
    vs_fast = f", {fast['latency_ms_p50'] / best['latency_ms_p50']:.2f}x the fastest fp32 ({fast['variant_id']})" \
        if fast is not None and fast["variant_id"] != best["variant_id"] else ""
    runner = d["runner_up"]
    tail = f" Runner-up: {runner['variant_id']} ({runner['latency_ms_p50']:.3g} ms)." if runner else ""
    return (f"At {where}{under}: ship {best['variant_id']}: p50 {best['latency_ms_p50']:.3g} ms{_noise(best)}, "
            f"{vs_ref}{vs_fast}; {_accuracy(best)}.{tail}")
