"""Precision conversion of ONNX graphs (fp16), keeping I/O types and fragile ops in fp32."""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Reductions and exponentials whose fp16 versions lose accuracy (LayerNorm statistics,
# Softmax sums, Pow in variance, Erf in GELU): kept in fp32 with casts around them.
FP32_OPS = ["LayerNormalization", "SimplifiedLayerNormalization", "SkipLayerNormalization", "Softmax",
            "ReduceMean", "ReduceSum", "Pow", "Sqrt", "Erf", "Exp", "Log", "Div"]


# Part of the cache key of converted graphs: bump it when the conversion changes, so no stale artifact is reused.
RECIPE = "fp16-v4: keep_io_types, FP32_OPS blocked, consumers of values beyond fp16 range kept in fp32, " \
         "duplicate casts dropped, unique node names"
# Part of the cache key of mixed int8/fp16 graphs (with the int8 recipe): bump when the node conversion changes.
MIXED_RECIPE = "mixed-v2: QDQ graph, the chosen float nodes alone to fp16 (FP32_OPS kept), casts at their borders"


def convert_fp16(src: Path, dst: Path, fp32_nodes: list[str] | None = None) -> dict[str, Any]:
    """The fp16 graph of ``src`` (fp32 I/O); ``fp32_nodes`` (fnmatch patterns of node names) stay in fp32 with
    casts around them, besides the fragile ops and the nodes whose weights exceed fp16's range."""
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    from optbench.export.graphfacts import fp16_out_of_range

    model = onnx.load(str(src))
    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    out_of_range = fp16_out_of_range(model)  # converted, these would be clamped to 65504 silently
    _name_nodes(model.graph)
    kept = matching_nodes([n.name for n in model.graph.node], fp32_nodes or [], "fp16 fp32_nodes")
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked,
                                         node_block_list=sorted(set(out_of_range) | set(kept)))
    _drop_duplicate_casts(converted.graph)
    _unique_node_names(converted.graph)
    onnx.save(converted, str(dst))
    ops = sorted({n.op_type for n in model.graph.node if n.op_type in blocked})
    facts: dict[str, Any] = {"fp16": "graph conversion, fp32 I/O", "fp32_ops_kept": ops}
    if out_of_range:
        facts["fp32_nodes_kept_for_range"] = out_of_range
    if fp32_nodes:
        facts["fp32_nodes_kept"] = len(kept)
    facts["fp16_compute_nodes"] = fp16_compute_nodes(dst)
    return facts


def convert_nodes_fp16(src: Path, dst: Path, nodes: list[str]) -> dict[str, Any]:
    """``src`` (a Q/DQ graph) with the float nodes named in ``nodes`` computing in fp16 and everything else as it
    was: int8 where it was quantized, fp32 elsewhere; casts at the borders (see :mod:`optbench.export.mixed`).
    The fragile ops stay fp32 here too."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    from optbench.export.mixed import half_nodes

    facts = half_nodes(src, dst, nodes, set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    return {**facts, "fp16_compute_nodes": fp16_compute_nodes(dst)}


def matching_nodes(names: list[str], patterns: list[str], what: str) -> list[str]:
    """Node names that ``patterns`` (fnmatch) name, in graph order; a pattern that names none is an error."""
    import fnmatch

    out: list[str] = []
    for pattern in patterns:
        hits = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not hits:
            raise ValueError(f"{what} pattern {pattern!r} matches no node of the graph (nodes are named like "
                             f"{names[:3]})")
        out += [h for h in hits if h not in out]
    return out


def fp16_compute_nodes(path: Path) -> int:
    """Nodes other than casts that write an fp16 tensor, read from the file (what the graph really computes in
    fp16, whatever was asked)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    try:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:
        pass
    g = model.graph
    half = {v.name for v in list(g.value_info) + list(g.output) if v.type.tensor_type.elem_type == 10}
    return sum(1 for n in g.node if n.op_type != "Cast" and any(o in half for o in n.output))


def _name_nodes(graph) -> None:
    """Unnamed nodes get their first output's name, so a node block list can name them."""
    for node in graph.node:
        if not node.name and node.output:
            node.name = node.output[0]


def _unique_node_names(graph) -> None:
    """The converter can insert Cast nodes under a name already in the graph, which ORT rejects."""
    seen: set[str] = set()
    for i, node in enumerate(graph.node):
        if node.name and node.name in seen:
            node.name = f"{node.name}_{i}"
        seen.add(node.name)


def _drop_duplicate_casts(graph) -> None:
    """Some converter versions insert the same Cast twice (same input, same type, same output name)."""
    defined: dict[str, object] = {}
    keep = []
    for node in graph.node:
        first = defined.get(node.output[0]) if node.output else None
        if first is not None and node.op_type == first.op_type == "Cast" and list(node.input) == list(first.input) \
                and node.attribute == first.attribute:
            continue
        for out in node.output:
            defined.setdefault(out, node)
        keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)
