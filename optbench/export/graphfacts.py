"""What a reduced-precision graph really holds, read from the file rather than echoed from the settings.

ONNX Runtime's quantizers can produce something other than what was asked: the dynamic quantizer
quantizes Conv weights per-tensor whatever ``per_channel`` says, and weights held as Constant nodes
get quantized at run time. A row therefore records what the produced graph contains.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}
INTEGER_OPS = {"ConvInteger": "Conv", "MatMulInteger": "MatMul", "QLinearConv": "Conv", "QLinearMatMul": "MatMul"}
_INT8 = {3: "S8", 2: "U8"}  # onnx TensorProto INT8, UINT8


def int8_facts(path: Path) -> dict[str, Any]:
    """Weight dtype, granularity, quantized compute nodes out of all, share of weight elements quantized."""
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    weights: dict[str, tuple[str, bool]] = {}  # int8 weight initializer -> (dtype, per-channel)
    zero_points: set[str] = set()
    runtime_quantized = 0
    weight_inputs = {n.input[1] for n in g.node if n.op_type in COMPUTE_OPS and len(n.input) > 1}
    other_constants = 0
    for n in g.node:
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type in _INT8:
            if n.output[0] not in weight_inputs:  # a quantized constant that is not a weight (Add/Mul operand)
                other_constants += 1
                continue
            w = inits[n.input[0]]
            single = len(w.dims) >= 2 and 1 in w.dims[:2]  # one output channel: per-tensor is per-channel
            weights[n.input[0]] = (_INT8[w.data_type], _size(inits.get(n.input[1])) > 1 or single)
            zero_points.update(n.input[2:3])
        elif n.op_type in ("ConvInteger", "MatMulInteger") and n.input[1] in inits:
            zp = inits.get(n.input[3]) if len(n.input) > 3 else None
            weights[n.input[1]] = (_INT8.get(inits[n.input[1]].data_type, "?"), _per_channel_integer(zp))
            zero_points.update(n.input[2:4])
        elif n.op_type == "QuantizeLinear" and n.input[0] in inits and inits[n.input[0]].data_type == 1 \
                and len(inits[n.input[0]].dims) >= 2:
            runtime_quantized += 1
    quantized_nodes, total, float_ops = _weight_ops(g, inits, producer, weights)
    q_elems = sum(_size(inits[w]) for w in weights)
    f_elems = sum(_size(i) for i in g.initializer if i.data_type in (1, 10) and len(i.dims) >= 2)
    dtypes = sorted({d for d, _ in weights.values()})
    per = {pc for _, pc in weights.values()}
    facts: dict[str, Any] = {
        "weights": "/".join(dtypes) or "none",
        "granularity": "per-channel" if per == {True} else "per-tensor" if per == {False} else
                       _mixed(weights) if per else "none",
        "quantized_ops": f"{quantized_nodes}/{total}",
        "weight_share_quantized": round(q_elems / (q_elems + f_elems), 4) if q_elems + f_elems else 0.0,
        "runtime_quantized_weights": runtime_quantized,
        "other_constants_quantized": other_constants,
    }
    if float_ops:
        facts["float_weight_ops"] = float_ops
    warnings = []
    if float_ops:
        total_elems = q_elems + f_elems
        worst = ", ".join(f"{op} x{c['nodes']} ({c['weight_elements'] / total_elems:.0%} of the weights)"
                          for op, c in sorted(float_ops.items(), key=lambda x: -x[1]["weight_elements"])[:3]) \
            if total_elems else ", ".join(float_ops)
        warnings.append(f"ops holding weights left in float: {worst}")
    if runtime_quantized:
        warnings.append(f"{runtime_quantized} float weights are quantized at run time (QuantizeLinear on weights)")
    if not weights:
        warnings.append("the int8 graph holds no int8 weights")
    facts["warnings"] = warnings
    return facts


def _weight_ops(g: Any, inits: dict, producer: dict, weights: dict) -> tuple[int, int, dict]:
    """Quantized ops out of every op that holds weights (a float initializer of rank >= 2, directly or through a
    Cast/DequantizeLinear), not only Conv/MatMul/Gemm: an LSTM left in float counts against the share. Also the
    float ones by op type, with their weight elements."""
    def weight_of(x: str) -> tuple[str, bool] | None:
        """(initializer, quantized) feeding input ``x``."""
        if x in inits and inits[x].data_type in (1, 10, 16) and len(inits[x].dims) >= 2:
            return x, False
        src = producer.get(x)
        if src is not None and src.op_type in ("DequantizeLinear", "Cast") and src.input[0] in inits:
            return src.input[0], src.op_type == "DequantizeLinear" and inits[src.input[0]].data_type in _INT8
        return None

    quantized, total, floats = 0, 0, {}
    for n in g.node:
        if n.op_type in ("DequantizeLinear", "QuantizeLinear", "Cast", "Reshape", "Transpose", "Identity"):
            continue
        if n.op_type in INTEGER_OPS or n.op_type in ("DynamicQuantizeLSTM", "QGemm", "QAttention"):
            quantized += 1
            total += 1
            continue
        held = [w for w in (weight_of(x) for x in n.input) if w is not None]
        if not held:
            continue
        total += 1
        if any(q for _, q in held):
            quantized += 1
        else:
            entry = floats.setdefault(n.op_type, {"nodes": 0, "weight_elements": 0})
            entry["nodes"] += 1
            entry["weight_elements"] += sum(_size(inits[w]) for w, _ in held)
    return quantized, total, floats


def _mixed(weights: dict) -> str:
    pc = sum(1 for _, p in weights.values() if p)
    return f"mixed ({pc} per-channel, {len(weights) - pc} per-tensor)"


def _size(tensor: Any) -> int:
    return int(np.prod(tensor.dims)) if tensor is not None and len(tensor.dims) else (1 if tensor is not None else 0)


def _per_channel_integer(zp: Any) -> bool:
    """ConvInteger/MatMulInteger: per-channel when the weight zero point is a vector (one per output channel)."""
    return zp is not None and _size(zp) > 1


def fp16_out_of_range(model: Any, limit: float = 65504.0) -> dict[str, str]:
    """Nodes consuming a float initializer with values beyond fp16's range → why (they must stay in fp32)."""
    from onnx import numpy_helper

    big: dict[str, float] = {}
    for init in model.graph.initializer:
        if init.data_type == 1:
            arr = numpy_helper.to_array(init)
            if arr.size and np.isfinite(arr).all() and float(np.abs(arr).max()) > limit:
                big[init.name] = float(np.abs(arr).max())
    out = {}
    for n in model.graph.node:
        for x in n.input:
            if x in big:
                out[n.name or n.output[0]] = f"{n.op_type} input '{x}' holds |x| up to {big[x]:.3g} > fp16 max {limit:g}"
    return out
