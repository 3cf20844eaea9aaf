"""ONNX Runtime as a variant ran on it: the graph ORT optimised at the variant's graph optimisation level
(``SessionOptions.optimized_model_filepath``), with the kernels it fused (QLinearConv for DequantizeLinear → Conv →
QuantizeLinear, FusedConv for Conv → Relu); that graph run as saved (no further optimisation) with the tensors
explain compares made graph outputs, so exposing them changes no kernel; and which of the converted graph's tensors
it still holds, under which name."""

from __future__ import annotations

import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

LEVELS = ("disable", "basic", "extended", "all")
# nodes ORT adds to expose a tensor in the layout the graph names it (NHWC kernels' outputs transposed back)
_LAYOUT = {"Transpose", "Identity"}
# the prefix ORT gives a tensor of an fp16 node it runs in fp32 for want of an fp16 kernel (InsertCastTransformer)
_PRECISION_FREE = "InsertedPrecisionFreeCast_"


def optimised(model: bytes | str, level: str = "all", threads: int | None = None) -> Any:
    """The graph ORT runs for ``model`` at ``level`` on the CPU (an onnx ModelProto)."""
    import onnx

    with tempfile.TemporaryDirectory(prefix="optbench-explain-") as tmp:
        so = _options(level, threads)
        so.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        _ort().InferenceSession(model, so, providers=["CPUExecutionProvider"])
        return onnx.load(so.optimized_model_filepath)


def session(model: Any, threads: int | None = None) -> Any:
    """A CPU session of an optimised graph as it is (``model``: a ModelProto), ``names`` exposed by the caller."""
    return _ort().InferenceSession(model.SerializeToString(), _options("disable", threads),
                                   providers=["CPUExecutionProvider"])


def kernels(model: Any) -> Counter:
    """The kernels of an optimised graph: op type → count (layout nodes left out)."""
    return Counter(f"{n.domain + '.' if n.domain else ''}{n.op_type}" for n in model.graph.node
                   if n.op_type not in _LAYOUT)


def holding(model: Any) -> dict[str, str]:
    """Tensor name of the converted graph → the name the optimised graph holds it under (itself, or the name ORT gives
    an fp16 node's tensor it computes in fp32)."""
    names = [o for n in model.graph.node for o in n.output if o] + [i.name for i in model.graph.input]
    out = {t: t for t in names}
    for t in names:
        out.setdefault(t.removeprefix(_PRECISION_FREE), t)
    return out


def with_outputs(model: Any, names: list[str]) -> Any:
    """A copy of ``model`` with ``names`` added to its graph outputs (ORT infers their types)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    have = {o.name for o in out.graph.output}
    for name in names:
        if name not in have:
            out.graph.output.append(onnx.ValueInfoProto(name=name))
            have.add(name)
    return out


def difference(before: Counter, after: Counter) -> str | None:
    """What exposing tensors changed in the kernels ORT runs ("2 QLinearConv → 2 Conv, 2 QuantizeLinear"), or None."""
    if before == after:
        return None
    gone, new = before - after, after - before
    say = lambda c: ", ".join(f"{n} {k}" for k, n in sorted(c.items())) or "nothing"  # noqa: E731
    return f"{say(gone)} → {say(new)}"


def _options(level: str, threads: int | None) -> Any:
    ort = _ort()
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[level]
    if threads:
        so.intra_op_num_threads = threads
    return so


def _ort() -> Any:
    import onnxruntime

    return onnxruntime
