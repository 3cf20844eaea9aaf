"""torch → ONNX: dynamic axes from the spec's symbolic dims, checker, onnxsim simplification."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from optbench.spec.models import ExportSettings, InputSpec


def dynamic_axes(inputs: list[InputSpec], output_names: list[str],
                 output_axes: dict[str, Any] | None = None) -> dict[str, dict[int, str]]:
    """Dynamic axes of the export: the inputs' symbolic dims, and each output's batch axis as the model's
    interpretation read it (a time-major output keeps its batch on axis 1), never axis 0 by assumption."""
    axes = {i.name: {ax: d for ax, d in enumerate(i.shape) if isinstance(d, str)} for i in inputs}
    batch = any(i.batch_axis is not None for i in inputs)
    for name in output_names:
        axis = (output_axes or {}).get(name)
        axes[name] = {axis: "batch"} if batch and isinstance(axis, int) else {}
    return {k: v for k, v in axes.items() if v}


def export_onnx(module: Any, inputs: list[InputSpec], sample: dict[str, np.ndarray], path: Path,
                settings: ExportSettings, output_names: list[str],
                output_axes: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``module`` to ``path``; returns what was done (exporter, simplification) for the row."""
    import onnx
    import torch

    args = tuple(torch.from_numpy(np.ascontiguousarray(sample[i.name])) for i in inputs)
    module = module.eval().to("cpu").float()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=[i.name for i in inputs],
                          output_names=output_names, dynamic_axes=dynamic_axes(inputs, output_names, output_axes),
                          opset_version=settings.opset, do_constant_folding=True, dynamo=False)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    info: dict[str, Any] = {"opset": settings.opset, "exporter": "torchscript", "simplified": False}
    if settings.simplify:
        info.update(simplify(path))
    return info


def simplify(path: Path) -> dict[str, Any]:
    import onnx

    try:
        import onnxsim
    except ImportError:
        return {"simplified": False, "simplify_note": "onnxsim is not installed"}
    proto = onnx.load(str(path))
    before = len(proto.graph.node)
    try:
        simplified, ok = onnxsim.simplify(proto)
    except Exception as e:  # onnxsim fails on some graphs; the unsimplified model is still valid
        return {"simplified": False, "simplify_note": f"onnxsim failed: {str(e).splitlines()[0][:160]}"}
    if not ok:
        return {"simplified": False, "simplify_note": "onnxsim could not validate the simplified graph"}
    onnx.save(simplified, str(path))
    return {"simplified": True, "nodes_before": before, "nodes_after": len(simplified.graph.node)}
