"""Accuracy drift of a variant's outputs against the reference outputs on the same inputs."""

from __future__ import annotations

import numpy as np


def drift_metrics(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float | None]:
    """max_abs, mean_abs, rel_l2, cosine; top-1 agreement and task accuracy for classifier outputs.

    ``out`` and ``ref`` are (N, ...) arrays; cosine is the mean over items of the per-item
    cosine similarity (for embeddings that is the quantity users compare).
    """
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference's {ref.shape}")
    o = out.astype(np.float64).reshape(len(out), -1)
    r = ref.astype(np.float64).reshape(len(ref), -1)
    diff = o - r
    ref_norm = np.linalg.norm(r)
    rel_l2 = float(np.linalg.norm(diff) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(diff))
    no, nr = np.linalg.norm(o, axis=1), np.linalg.norm(r, axis=1)
    denom = no * nr
    # two zero vectors agree (cosine 1); a zero vector against a non-zero one does not (cosine 0)
    cos = np.where(denom > 0, (o * r).sum(1) / np.where(denom > 0, denom, 1), np.where((no == 0) & (nr == 0), 1.0, 0.0))
    row: dict[str, float | None] = {
        "drift_max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
        "drift_mean_abs": float(np.abs(diff).mean()) if diff.size else 0.0,
        "drift_rel_l2": rel_l2,
        "drift_cosine": float(cos.mean()),
        "top1_agreement": None,
        "task_accuracy": None,
    }
    if is_classifier(ref):  # the classification task's agreement and accuracy (one implementation)
        from optbench.measure.tasks import TaskContext, classification
        from optbench.spec.models import ClassificationTask

        m = classification(ClassificationTask(kind="classification"), out, ref, labels, TaskContext(), {})
        row.update(top1_agreement=m["top1_agreement"], task_accuracy=m["task_accuracy"])
    return row


def is_classifier(ref: np.ndarray) -> bool:
    """(N, C) logits with C > 1 are treated as a classifier's output."""
    return ref.ndim == 2 and ref.shape[1] > 1


# ---------------------------------------------------------------- every output, every part
# An output quantized to this few distinct values, where the reference takes many more, has collapsed
# (a dead int8 head: class scores all 0 but for a handful of saturated anchors). A coarse 8-bit output keeps
# more levels than this and is judged by its metrics, not called dead.
COLLAPSED_LEVELS = 4


def collapsed(out: np.ndarray, ref: np.ndarray) -> str | None:
    """Why an output is degenerate where the reference is not (non-finite values, a constant), or None.

    Aggregate metrics can hide a dead output: a detector whose class scores are all 0 keeps a cosine of
    0.998 over its whole output because box coordinates dominate it. Judged per output and part, a
    collapsed spread fails whatever the cosine says."""
    finite = np.isfinite(out)
    if not finite.all():
        return f"{int((~finite).sum())} of {out.size} values are NaN/Inf"
    r = ref.astype(np.float64)
    o = out.astype(np.float64)
    ref_spread, out_spread = float(r.std()), float(o.std())
    if ref_spread <= 1e-12 * max(1.0, float(np.abs(r).max(initial=0))):
        return None
    if out_spread <= 1e-3 * ref_spread:
        kind = "all zero" if not np.any(o) else f"constant {float(o.ravel()[0]):.4g}"
        return f"collapsed: {kind} (spread {out_spread:.3g}) where the reference spreads {ref_spread:.3g}"
    levels, ref_levels = len(np.unique(o)), len(np.unique(r))
    if levels <= COLLAPSED_LEVELS < ref_levels // 16:
        share = float((o != np.median(o)).mean())
        return (f"collapsed: {levels} distinct values ({share:.2%} of them off the median) where the reference "
                f"takes {ref_levels}")
    return None


def judge_outputs(outs: dict[str, np.ndarray], refs: dict[str, np.ndarray], views: list, labels: np.ndarray | None,
                  ctx) -> dict:
    """Drift, the degenerate-output guard and task metrics per view; flat columns hold the worst view.

    Returns ``{"outputs": {label: metrics}, <flat worst metrics>, "worst_output": label, "collapsed": [...]}``."""
    from optbench.measure.tasks import LOWER_BETTER, evaluate

    per: dict[str, dict] = {}
    for v in views:
        o, r = v.select(outs), v.select(refs)
        if v.postprocess:
            o, r = _post(v.postprocess, o, ctx), _post(v.postprocess, r, ctx)
        m: dict = {k: val for k, val in drift_metrics(o, r).items() if k.startswith("drift_")}
        m["collapsed"] = collapsed(o, r)
        if v.task is not None:
            m["task"] = v.task.kind
            if np.isfinite(o).all():
                m.update(evaluate(v.task, o, r, labels, ctx, v.parts))
        per[v.label] = m
    flat: dict = {"outputs": per, "collapsed": [f"{k}: {m['collapsed']}" for k, m in per.items() if m["collapsed"]]}
    for key in sorted({k for m in per.values() for k in m if k not in ("collapsed", "task")}):
        vals = [(m[key], label) for label, m in per.items() if m.get(key) is not None]
        if not vals:
            flat[key] = None
            continue
        nan = [x for x in vals if isinstance(x[0], float) and np.isnan(x[0])]
        flat[key] = nan[0][0] if nan else (max(vals) if key in LOWER_BETTER else min(vals))[0]
    rel = [(m["drift_rel_l2"], label) for label, m in per.items()]
    flat["worst_output"] = max(rel, key=lambda x: (np.nan_to_num(x[0], nan=np.inf), x[1]))[1] if rel else None
    return flat


def _post(hook: str, arr: np.ndarray, ctx) -> np.ndarray:
    from pathlib import Path

    from optbench.models import import_entrypoint

    fn = import_entrypoint(hook, ctx.spec_dir or Path("."), field="outputs.postprocess")
    return np.asarray(fn(arr))
