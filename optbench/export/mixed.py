"""Chosen nodes of a mostly-fp32 (or Q/DQ) graph computed in fp16, the rest left exactly as it was.

ONNX Runtime's fp16 converter is made for the other case, a graph that is fp16 but for a few blocked nodes: it
types every tensor fp16 and wraps the blocked nodes in casts, which around a Q/DQ graph puts a cast pair between
every DequantizeLinear and its consumer (the int8 kernels are then never fused, and every activation is rounded
to fp16 on the way). Here only the chosen nodes change: their float inputs are cast to fp16 on the way in (a
weight gets an fp16 copy), their float outputs are written in fp16 and cast back to fp32 only where a node that
stays in fp32, or the graph's output, reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FLOAT, FLOAT16 = 1, 10
FP16_MAX = 65504.0
# inputs that stay float32 whatever the node's type (ONNX Runtime's converter keeps the same list)
ALWAYS_FLOAT_INPUTS = {"Resize": [2], "GroupNorm": [1, 2], "SkipGroupNorm": [1, 2]}
NEVER = {"Cast", "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}


def half_nodes(src: Path, dst: Path, names: list[str], blocked_ops: set[str]) -> dict[str, Any]:
    """Write ``src`` with the nodes named in ``names`` computing in fp16; returns what was done, read from the
    result: nodes converted, and the chosen ones kept in fp32 with the reason."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    g = model.graph
    types = _types(model)
    inits = {i.name: i for i in g.initializer}
    chosen, kept = _convertible(g, set(names), blocked_ops, types, inits)
    alias: dict[str, str] = {}   # fp32 tensor -> its fp16 twin (a converted node's output, a cast, a weight copy)
    back: set[str] = set()       # fp16 outputs already cast back to their fp32 name
    readers = _readers(g)
    outputs = {o.name for o in g.output}
    new_nodes, new_inits = [], []

    def half_of(x: str) -> str:
        if x in alias:
            return alias[x]
        name = f"{x}_fp16"
        if x in inits:
            arr = numpy_helper.to_array(inits[x]).astype(np.float16)
            new_inits.append(numpy_helper.from_array(arr, name))
        else:
            new_nodes.append(helper.make_node("Cast", [x], [name], name=f"{x}_to_fp16", to=FLOAT16))
        alias[x] = name
        return name

    for n in g.node:
        if n.name not in chosen:  # an fp32 node reads a converted node's output under its name, cast back
            new_nodes.append(n)
            continue
        always = set(ALWAYS_FLOAT_INPUTS.get(n.op_type, []))
        for i, x in enumerate(n.input):
            if x and i not in always and types.get(x) == FLOAT:
                n.input[i] = half_of(x)
        casts_back = []
        for j, y in enumerate(n.output):
            if not y or types.get(y) != FLOAT:
                continue
            twin = f"{y}_fp16"
            n.output[j] = twin
            alias[y] = twin
            if y in outputs or any(r not in chosen for r in readers.get(y, [])):
                casts_back.append(helper.make_node("Cast", [twin], [y], name=f"{y}_to_fp32", to=FLOAT))
                back.add(y)
        new_nodes.append(n)
        new_nodes.extend(casts_back)
    del g.node[:]
    g.node.extend(new_nodes)
    g.initializer.extend(new_inits)
    del g.value_info[:]  # stale types; ONNX Runtime infers them again
    onnx.save(model, str(dst))
    return {"fp16_nodes_converted": len(chosen), **({"fp16_nodes_kept_fp32": kept} if kept else {})}


def _types(model: Any) -> dict[str, int]:
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
        inferred = model
    g = inferred.graph
    out = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    out.update({i.name: i.data_type for i in g.initializer})
    return out


def _readers(g: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for n in g.node:
        for x in n.input:
            if x:
                out.setdefault(x, []).append(n.name)
    return out


def _convertible(g: Any, names: set[str], blocked_ops: set[str], types: dict, inits: dict) -> tuple[set, dict]:
    """The chosen nodes that can compute in fp16, and the others with why not."""
    from onnx import numpy_helper

    chosen, kept = set(), {}
    for n in g.node:
        if n.name not in names:
            continue
        floats = [x for x in n.input if x and types.get(x) == FLOAT]
        if n.op_type in NEVER or n.op_type in blocked_ops:
            kept[n.name] = f"{n.op_type} stays fp32 (a cast, a Q/DQ node, or an op fp16 makes fragile)"
        elif not floats:
            kept[n.name] = "reads no float tensor"
        elif big := [x for x in floats if x in inits and _beyond_fp16(numpy_helper.to_array(inits[x]))]:
            kept[n.name] = f"input '{big[0]}' holds values beyond fp16's range"
        else:
            chosen.add(n.name)
    return chosen, kept


def _beyond_fp16(arr: np.ndarray) -> bool:
    return bool(arr.size) and bool(np.isfinite(arr).all()) and float(np.abs(arr).max()) > FP16_MAX
