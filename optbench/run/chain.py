"""A variant's conversion chain: every step from the reference to what the backend ran (a transform, ``tensorflow →
onnx`` by tf2onnx, ``torch → onnx`` by the exporter, ``onnx → onnxruntime fp16``), each with the drift it added
against the step before it on the same eval items. A variant whose total drift fails its budget then says which
step lost the accuracy: a conversion defect is named as such.

The outputs after each intermediate step are computed once per run and shape (the fp32 ONNX by ONNX Runtime on the
CPU, the transformed module by torch on the CPU) and kept in the run's work folder for the variants that share them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from optbench.backends import reference_backend
from optbench.plan import Variant
from optbench.run.context import Context, load_reference, reference_outputs


def conversion_chain(ctx: Context, v: Variant, backend: Any, outputs: dict, onnx_fp32: Path | None,
                     export: dict | None, module: Any = None) -> list[dict]:
    """The steps from the reference to the variant's ``outputs``, each with the drift it added. ``onnx_fp32``: the
    fp32 ONNX the backend's artifact was made from (None for torch-side and native backends); ``export``: how that
    ONNX was exported from ``module`` (torch sources)."""
    framework = ctx.prepared.get("framework", "torch")
    prev, stage = load_reference(ctx.run_dir, v.dims), framework
    steps: list[dict] = []
    if v.transform != "none" and module is not None:
        out = _stage(ctx, v, ["transform", ctx.prepared["identity"], v.transform],
                     lambda: reference_backend("torch").reference_infer(module), by_name=False)
        steps.append({"step": f"transform {v.transform}", "tool": "optbench.transforms", **_added(out, prev)})
        prev = out
    if onnx_fp32 is not None:
        done = ctx.prepared.get("conversion") or ([_export_step(export)] if export is not None else [])
        if done:
            from optbench.digest import file_digest

            out = _stage(ctx, v, ["onnx", file_digest(onnx_fp32)],
                         lambda: reference_backend("onnx").reference_infer(onnx_fp32), by_name=True)
            # the ONNX's outputs measure the last step, which names the file it made (for a check of that step)
            steps += [*done[:-1], {**done[-1], "onnx": str(onnx_fp32), **_added(out, prev)}]
            prev = out
        stage = "onnx"
    is_reference = not steps and backend.reference_for == framework and v.precision == "fp32" and v.device == "cpu"
    if not is_reference:
        versions = ", ".join(f"{k} {val}" for k, val in backend.installed()[1].items())
        steps.append({"step": f"{stage} → {backend.name} {v.precision}", "tool": versions or backend.name,
                      "precision": v.precision, **_added(outputs, prev)})
    return steps


def _export_step(export: dict) -> dict:
    import torch

    return {"step": "torch → onnx", "tool": f"torch.onnx.export ({export.get('exporter', 'torchscript')})",
            "version": torch.__version__, "opset": export.get("opset"), "simplified": export.get("simplified")}


def _added(out: dict, prev: dict) -> dict[str, Any]:
    """The drift a step added: its outputs against the step before's, the worst float output's rel. L2 (integer
    outputs: the share of elements that changed)."""
    from optbench.measure.drift import drift_metrics

    worst: tuple[float, str] | None = None
    changed: float | None = None
    for name, before in prev.items():
        after = out.get(name)
        if after is None or np.shape(after) != np.shape(before):
            return {"drift_rel_l2": None, "note": f"output '{name}' is not comparable with the step before"}
        if before.dtype.kind in "iub":
            share = float(np.mean(np.asarray(after) != before)) if before.size else 0.0
            changed = max(changed or 0.0, share)
            continue
        rel = drift_metrics(np.asarray(after, dtype=np.float32), before)["drift_rel_l2"]
        if worst is None or not rel <= worst[0]:  # NaN is the worst
            worst = (rel, name)
    facts: dict[str, Any] = {"drift_rel_l2": None if worst is None else worst[0]}
    if worst is not None and len(prev) > 1:
        facts["worst_output"] = worst[1]
    if changed is not None:
        facts["changed_element_rate"] = changed
    return facts


def _stage(ctx: Context, v: Variant, key: list, make_infer: Callable[[], Any], by_name: bool) -> dict[str, np.ndarray]:
    """The eval items' outputs after an intermediate step, at the variant's shape, computed once per run; an ONNX
    file's outputs are read by name (``by_name``), a torch module's by position (see
    :func:`optbench.outputs.as_reference_names`)."""
    from optbench.outputs import as_reference_names

    digest = hashlib.sha256(json.dumps([key, v.dims], sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = ctx.work / "stages" / f"{digest}.npz"
    if path.exists():
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    items = ctx.splits.eval.at_shape(ctx.spec.inputs, v.dims)
    infer, names = make_infer(), ctx.prepared["output_names"]
    step = f"the {key[0]} step"
    out = reference_outputs(lambda feeds: as_reference_names(infer(feeds), names, by_name, step), items,
                            ctx.prepared["reference_batch"], ctx.prepared.get("output_axes"))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **out)
    os.replace(tmp, path)  # variants in parallel write the same outputs; the last one stays
    return out
