"""Normalise an ONNX graph before quantizing or converting it, and prove it still computes the same thing.

Exporters other than torch's (paddle2onnx, tf2onnx) store weights as Constant nodes, which ONNX
Runtime's quantizers do not treat as weights: the static quantizer then quantizes them at run time
(per-tensor U8, whatever the settings say) and the dynamic one fails. Per-channel Q/DQ needs opset
13. So a copy is normalised as far as the precision needs, each step recorded, and the normalised
fp32 graph is checked against the file on real inputs before anything is built from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Part of the cache key of every artifact built from a normalised graph: bump when a step changes.
RECIPE = "normalize-v1: constants→initializers, opset upgrade on demand, shape inference, check rel L2 < 1e-5"
TOLERANCE = 1e-5


class NormalizeError(RuntimeError):
    """A normalisation step failed: the row fails naming the step (nothing else is quantized instead)."""


def constants_to_initializers(model: Any) -> int:
    """Constant nodes of the main graph holding a tensor become initializers of the same name."""
    from onnx import numpy_helper

    keep, moved = [], 0
    for node in model.graph.node:
        attrs = {a.name: a for a in node.attribute}
        if node.op_type == "Constant" and not node.domain and "value" in attrs:
            tensor = numpy_helper.to_array(attrs["value"].t)
            model.graph.initializer.append(numpy_helper.from_array(np.asarray(tensor), node.output[0]))
            moved += 1
        else:
            keep.append(node)
    if moved:
        del model.graph.node[:]
        model.graph.node.extend(keep)
        _drop_initializer_inputs(model)
    return moved


def _drop_initializer_inputs(model: Any) -> None:
    """Old exporters list initializers among graph inputs; quantizers then treat weights as overridable inputs."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(inputs)


def opset_of(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def normalize(src: Path, dst: Path, min_opset: int, sample: dict[str, np.ndarray]) -> dict[str, Any]:
    """Write the normalised copy of ``src`` to ``dst``; returns the steps done and the check's rel. L2."""
    import onnx

    steps: list[str] = []
    model = _step("load", lambda: onnx.load(str(src)))
    n = _step("constants to initializers", lambda: constants_to_initializers(model))
    if n:
        steps.append(f"{n} Constant nodes → initializers")
    have = opset_of(model)
    if have < min_opset:
        from onnx import version_converter

        model = _step(f"opset upgrade {have} → {min_opset}", lambda: version_converter.convert_version(model, min_opset))
        steps.append(f"opset {have} → {min_opset}")
    model = _step("shape inference", lambda: onnx.shape_inference.infer_shapes(model))
    steps.append("shape inference")
    _step("checker", lambda: onnx.checker.check_model(model))
    onnx.save(model, str(dst))
    err = _step("fp32 equivalence check", lambda: max_rel_l2(src, dst, sample))
    if not err <= TOLERANCE:
        raise NormalizeError(f"normalisation changed the model: rel. L2 {err:.3g} > {TOLERANCE:g} against the file "
                             f"(steps: {', '.join(steps)})")
    return {"normalized": steps or ["nothing to do"], "normalized_rel_l2": err, "normalized_opset": max(have, min_opset)}


def _step(name: str, fn):
    try:
        return fn()
    except NormalizeError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [e.__class__.__name__])[0][:200]
        raise NormalizeError(f"ONNX normalisation step '{name}' failed: {e.__class__.__name__}: {first}") from None


def max_rel_l2(a: Path, b: Path, feeds: dict[str, np.ndarray]) -> float:
    """The largest relative L2 difference over the outputs of two ONNX files on the same inputs (ORT CPU)."""
    import onnxruntime as ort

    def run(path: Path) -> list[np.ndarray]:
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        return sess.run(None, {k: v for k, v in feeds.items() if k in names})

    worst = 0.0
    for x, y in zip(run(a), run(b)):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        norm = np.linalg.norm(x)
        diff = np.linalg.norm(x - y)
        worst = max(worst, float(diff / norm) if norm > 0 else float(diff))
    return worst
