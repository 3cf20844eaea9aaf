"""A variant's outputs judged against the reference's: every output and part, by its task (see
:mod:`optbench.measure.drift`); the reference pass uses the same code to validate the spec's outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optbench.plan import Variant
from optbench.run.context import Context, load_reference


def judge_outputs_of(ctx: Context, v: Variant, outputs: dict) -> dict:
    """The variant's outputs (item-major, as :func:`variant_outputs` gives them) judged against the reference's."""
    refs = load_reference(ctx.run_dir, v.dims)
    return judge_all(ctx.spec, ctx.spec_dir, outputs, refs, ctx.splits.eval.labels, Path(ctx.prepared["model_path"]))


def variant_outputs(ctx: Context, v: Variant, session: Any, items: Any) -> dict:
    """Every output of the variant on the eval items, item-major, in the reference's types and checked against its
    names and shapes."""
    from optbench.outputs import as_reference_names, concat_items, item_major

    names, axes = ctx.prepared["output_names"], ctx.prepared.get("output_axes")
    refs = load_reference(ctx.run_dir, v.dims)
    ref_kinds = {k: r.dtype for k, r in refs.items()}
    chunks = []
    for feeds, real in items.batches(v.batch_size):
        out = as_reference_names(session.infer(feeds), names, session.names_outputs)
        out = {k: _as_reference_kind(x, ref_kinds.get(k)) for k, x in out.items()}
        chunks.append((item_major(out, axes), real))
    outputs = concat_items(chunks)
    for name, ref in refs.items():
        if name not in outputs:
            raise RuntimeError(f"the variant returns no output '{name}' (it returns {list(outputs)})")
        if outputs[name].shape != ref.shape:
            raise RuntimeError(f"output '{name}' has shape {outputs[name].shape[1:]} per item where the reference's "
                               f"is {ref.shape[1:]}")
    return outputs


def judge_all(spec: Any, spec_dir: Path, outputs: dict, refs: dict, labels: Any, model_path: Path) -> dict:
    """Every view judged (after the spec's model-level hook, applied to both sides alike); with a hook, the raw
    outputs' drift is kept beside (``raw_outputs``)."""
    from optbench.measure.drift import _drift, judge_outputs, postprocess_outputs
    from optbench.measure.tasks import TaskContext
    from optbench.outputs import build_views

    if missing := sorted(set(refs) - set(outputs)):
        raise ValueError(f"the variant does not return output(s) {missing}, which the reference returns: an "
                         f"output that exists at some batch sizes or precisions only cannot be judged")
    if extra := sorted(set(outputs) - set(refs)):
        raise ValueError(f"the variant returns output(s) {extra}, which the reference does not: an output that "
                         f"exists at some batch sizes or precisions only cannot be judged")
    raw = {}
    if spec.postprocess_outputs:
        raw = {k: _drift(outputs[k], r) for k, r in refs.items() if r.dtype.kind not in "iub"}
        outputs = postprocess_outputs(spec.postprocess_outputs, outputs, spec_dir)
        refs = postprocess_outputs(spec.postprocess_outputs, refs, spec_dir)
    views = build_views(spec, refs, labels)
    judged = judge_outputs(outputs, refs, views, labels, TaskContext(model_path, spec_dir))
    if spec.postprocess_outputs:
        judged["raw_outputs"] = raw
        judged["drift_after_postprocess"] = ["postprocess_outputs"] + judged["drift_after_postprocess"]
    return judged


def _as_reference_kind(x: Any, ref_dtype: Any) -> Any:
    """Integer and boolean reference outputs are compared exactly: a backend that returned them as floats
    (an engine's int32 ids cast to float) is read back in the reference's type."""
    import numpy as np

    if ref_dtype is None or np.dtype(ref_dtype).kind not in "iub" or np.asarray(x).dtype.kind not in "fc":
        return x
    return np.rint(np.asarray(x)).astype(ref_dtype)
