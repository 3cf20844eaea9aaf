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


def convert_fp16(src: Path, dst: Path) -> dict[str, Any]:
    import onnx
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    from optbench.export.graphfacts import fp16_out_of_range

    model = onnx.load(str(src))
    blocked = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(FP32_OPS))
    out_of_range = fp16_out_of_range(model)  # converted, these would be clamped to 65504 silently
    _name_nodes(model.graph)
    converted = convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked,
                                         node_block_list=sorted(out_of_range))
    _drop_duplicate_casts(converted.graph)
    _unique_node_names(converted.graph)
    onnx.save(converted, str(dst))
    kept = sorted({n.op_type for n in model.graph.node if n.op_type in blocked})
    facts: dict[str, Any] = {"fp16": "graph conversion, fp32 I/O", "fp32_ops_kept": kept}
    if out_of_range:
        facts["fp32_nodes_kept_for_range"] = out_of_range
    return facts


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
