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

    Float outputs get drift (rel. L2, cosine, ...); integer and boolean outputs (class ids, masks) get exact-match
    rates instead, since a cosine between class ids means nothing. Where a ``postprocess`` hook transformed a
    view, its drift columns describe the transformed arrays (``drift_after_postprocess``) and ``raw_drift_*``
    keep the drift of the model's own output.

    Returns ``{"outputs": {label: metrics}, <flat worst metrics>, "worst_output": label, "collapsed": [...]}``."""
    import dataclasses

    from optbench.measure.tasks import LOWER_BETTER, evaluate, exact

    if getattr(ctx, "arrays", None) is None and dataclasses.is_dataclass(ctx):
        ctx = dataclasses.replace(ctx, arrays=(outs, refs))
    per: dict[str, dict] = {}
    for v in views:
        o, r = v.select(outs), v.select(refs)
        m: dict = {}
        if v.postprocess:
            m.update({f"raw_{k}": val for k, val in _drift(o, r).items()})
            o, r = _post(v.postprocess, o, ctx), _post(v.postprocess, r, ctx)
            m["drift_after_postprocess"] = True
        if r.dtype.kind in "iub":
            m.update(exact(o, r))
        else:
            m.update(_drift(o, r))
        m["collapsed"] = collapsed(o, r)
        if v.task is not None:
            m["task"] = v.task.kind
            if r.dtype.kind in "iub" or np.isfinite(o).all():
                m.update(evaluate(v.task, o, r, labels, ctx, v.parts))
        per[v.label] = m
    flat: dict = {"outputs": per, "collapsed": [f"{k}: {m['collapsed']}" for k, m in per.items() if m["collapsed"]],
                  "drift_after_postprocess": sorted(k for k, m in per.items() if m.get("drift_after_postprocess"))}
    skip = ("collapsed", "task", "drift_after_postprocess", "topk_k", "topk_note")
    for key in sorted({k for m in per.values() for k in m if k not in skip}):
        vals = [(m[key], label) for label, m in per.items() if m.get(key) is not None]
        if not vals:
            flat[key] = None
            continue
        nan = [x for x in vals if isinstance(x[0], float) and np.isnan(x[0])]
        flat[key] = nan[0][0] if nan else (max(vals) if key in LOWER_BETTER else min(vals))[0]
    topk = [(m["topk_agreement"], label) for label, m in per.items() if m.get("topk_agreement") is not None]
    if topk:  # the k of the output whose top-k agreement the flat column holds
        flat["topk_k"] = per[min(topk)[1]]["topk_k"]
    rel = [(m["drift_rel_l2"], label) for label, m in per.items() if "drift_rel_l2" in m]
    rel += [(1.0 - m["exact_element_rate"], label) for label, m in per.items() if "exact_element_rate" in m]
    flat["worst_output"] = max(rel, key=lambda x: (np.nan_to_num(x[0], nan=np.inf), x[1]))[1] if rel else None
    return flat


def _drift(o: np.ndarray, r: np.ndarray) -> dict:
    return {k: val for k, val in drift_metrics(o.astype(np.float64, copy=False), r.astype(np.float64, copy=False)).items()
            if k.startswith("drift_")}


class HookError(RuntimeError):
    """A user's hook raised: the message names the hook (the traceback stays in the variant's log)."""


def _post(hook: str, arr: np.ndarray, ctx) -> np.ndarray:
    from pathlib import Path

    from optbench.paths import import_entrypoint

    fn = import_entrypoint(hook, ctx.spec_dir or Path("."), field="outputs.postprocess")
    try:
        return np.asarray(fn(arr.copy()))  # a copy: a hook that works in place never touches the reference
    except Exception as e:
        raise HookError(f"the postprocess hook {hook} failed: {e.__class__.__name__}: {e}") from e


def postprocess_outputs(hook: str | None, arrays: dict[str, np.ndarray], spec_dir) -> dict[str, np.ndarray]:
    """The spec's model-level hook over every (item-major) output at once; copies in, arrays out."""
    if not hook:
        return arrays
    from pathlib import Path

    from optbench.errors import SpecError
    from optbench.paths import import_entrypoint

    fn = import_entrypoint(hook, Path(spec_dir or "."), field="postprocess_outputs")
    try:
        result = fn({k: v.copy() for k, v in arrays.items()})
    except Exception as e:
        raise HookError(f"the postprocess_outputs hook {hook} failed: {e.__class__.__name__}: {e}") from e
    if not isinstance(result, dict) or not result:
        raise SpecError(f"postprocess_outputs {hook} returned {type(result).__name__}, not a dict of arrays",
                        field="postprocess_outputs")
    out = {str(k): np.asarray(v) for k, v in result.items()}
    n = len(next(iter(arrays.values())))
    if bad := [k for k, v in out.items() if v.ndim == 0 or len(v) != n]:
        raise SpecError(f"postprocess_outputs {hook} returned {bad} without one entry per item ({n} items)",
                        field="postprocess_outputs")
    return out
