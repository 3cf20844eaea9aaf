"""An ONNX graph read for drift localisation: its compute nodes in order with their depth and module path, the
activations they read and write under the *original* tensor names, and a copy with every such activation made a
graph output.

A converted graph renames what it wraps: ONNX Runtime's QDQ quantizer feeds a node ``X_DequantizeLinear_Output``
(= DequantizeLinear(QuantizeLinear(X))) where the fp32 graph fed it ``X``, and an fp16 conversion puts Cast nodes
around blocked nodes and graph outputs. Every such wrapper is followed back to the tensor it wraps, so a node of
the variant and the node of the reference that computed the same thing meet under one name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# nodes that only carry a tensor under another name or type: followed back, never ranked
WRAPPERS = {"QuantizeLinear", "DequantizeLinear", "Cast"}
# ops that compute shapes and indices: their outputs are integers, no drift to speak of
_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass(frozen=True)
class Node:
    name: str
    op_type: str
    inputs: tuple[str, ...]   # activations read (original names; weights and constants left out)
    outputs: tuple[str, ...]  # tensors written (original names)
    depth: int                # longest path from a graph input, in compute nodes
    order: int                # position in topological order
    module: str | None        # torch module path where the exporter kept it in the name (layer3.1.conv2)
    converted: bool = False   # its precision was changed: it reads a dequantized tensor, or computes in fp16


@dataclass
class Graph:
    path: Path
    nodes: list[Node]
    outputs: list[str]                      # the graph's own outputs (original names)
    inputs: list[str]
    tensors: set[str]                       # every tensor name of the file
    read_at: dict[str, str] = field(default_factory=dict)  # original name -> the tensor of this file that holds it
    all_nodes: list[str] = field(default_factory=list)     # every node but the wrappers, in order (integer ops too)

    def node_names(self) -> set[str]:
        return {n.name for n in self.nodes}


def module_path(node_name: str) -> str | None:
    """The torch module path an exporter kept in a node name: ``/layer3/layer3.1/conv2/Conv`` → ``layer3.1.conv2``,
    ``/model.22/cv3.0/cv3.0.0/conv/Conv`` → ``model.22.cv3.0.0.conv``; None for a name without scopes. A scope that
    repeats its parent's name with a suffix (``layer3`` then ``layer3.1``) replaces it rather than nesting."""
    if not node_name.startswith("/") or node_name.count("/") < 2:
        return None
    scopes = [s for s in node_name.strip("/").split("/")[:-1] if s]
    path: list[str] = []
    for s in scopes:
        if path and s.startswith(path[-1] + "."):
            path[-1] = s
        else:
            path.append(s)
    return ".".join(path) or None


def scope_of(node_name: str) -> str:
    """The node's scope (its name without the op part); a name without scopes is its own scope."""
    return node_name.rsplit("/", 1)[0] if node_name.startswith("/") and node_name.count("/") >= 2 else node_name


def read_graph(path: Path, reference: Graph | None = None) -> Graph:
    """The graph's compute nodes in topological order. With ``reference`` (the fp32 graph it was converted from),
    the Q/DQ and Cast nodes the conversion added (those the reference has no node of that name for) are wrappers:
    every tensor they connect is read under the reference's name, at the value the wrapped node wrote."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    g = model.graph
    inits = {i.name for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    model_nodes = reference.node_names() if reference is not None else None

    def is_wrapper(n) -> bool:
        return model_nodes is not None and n.op_type in WRAPPERS and (n.name or n.output[0]) not in model_nodes

    name_of, read_at = _classes(g, is_wrapper, reference.tensors if reference is not None else None)
    typed, half = _float_tensors(model)
    nodes: list[Node] = []
    depth_of: dict[str, int] = {}
    every: list[str] = []
    for i, n in enumerate(_topological(g.node, producer)):
        ins = [x for x in n.input if x and x not in inits and name_of.get(x, x) not in inits]
        d = max((depth_of.get(name_of.get(x, x), 0) for x in ins), default=0)
        if is_wrapper(n):
            for o in n.output:
                depth_of.setdefault(name_of.get(o, o), d)
            continue
        every.append(n.name or n.output[0])
        for o in n.output:
            depth_of[name_of.get(o, o)] = d + 1
        outs = tuple(dict.fromkeys(name_of.get(o, o) for o in n.output if o and o in typed))
        if not outs:
            continue
        act = tuple(dict.fromkeys(name_of.get(x, x) for x in ins if x in typed or name_of.get(x, x) in typed))
        converted = model_nodes is not None and (
            any(producer[x].op_type == "DequantizeLinear" for x in n.input if x in producer)
            or any(o in half for o in n.output))
        nodes.append(Node(n.name or n.output[0], n.op_type, act, outs, d + 1, i, module_path(n.name or ""),
                          converted))
    inputs = [i.name for i in g.input if i.name not in inits]
    tensors = {o for n in g.node for o in n.output} | set(inputs)
    return Graph(Path(path), nodes, [name_of.get(o.name, o.name) for o in g.output], inputs, tensors, read_at, every)


def _classes(g: Any, is_wrapper, reference: set[str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """Tensors joined by wrappers, each class under one name (the member the reference has, else its root, the
    tensor a wrapped node wrote): tensor → that name, and that name → the root to read its value at."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    wrapped = set()
    for n in g.node:
        if is_wrapper(n) and n.input and n.input[0]:
            for o in n.output:
                parent[find(o)] = find(n.input[0])
                wrapped.add(o)
    members: dict[str, list[str]] = {}
    for t in parent:
        members.setdefault(find(t), []).append(t)
    name_of, read_at = {}, {}
    for root, ms in members.items():
        group = [root] + [m for m in ms if m != root]
        named = next((m for m in group if reference is None or m in reference), root)
        for m in group:
            name_of[m] = named
        read_at[named] = root
    return name_of, read_at


def _float_tensors(model: Any) -> tuple[set[str], set[str]]:
    """Names of float activations (shape inference where the file lacks value infos; unknown types count, since an
    exposed output with no float type is dropped when read), and of the fp16 ones among them."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # a graph shape inference cannot read: every tensor is a candidate
        inferred = model
    g = inferred.graph
    known = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    names = {o for n in g.node for o in n.output} | {i.name for i in g.input}
    return {t for t in names if known.get(t, 1) in _FLOAT_TYPES or known.get(t, 0) == 0}, \
        {t for t in names if known.get(t) == 10}


def _topological(nodes: Any, producer: dict) -> list:
    """The nodes in an order where every node follows its producers (ONNX files are sorted, but not all)."""
    done: set[str] = set()
    out: list = []
    pending = list(nodes)
    available = set()
    while pending:
        rest = []
        for n in pending:
            if all(not x or x not in producer or x in available for x in n.input):
                out.append(n)
                available.update(n.output)
                done.add(n.name)
            else:
                rest.append(n)
        if len(rest) == len(pending):  # a cycle or a dangling input: keep the file's order for the rest
            out += rest
            break
        pending = rest
    return out


def exposed(path: Path, names: list[str]) -> bytes:
    """The graph with ``names`` (tensors it computes) added as outputs, serialised (ORT infers their types)."""
    import onnx

    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    for name in names:
        if name not in have:
            model.graph.output.append(onnx.ValueInfoProto(name=name))
            have.add(name)
    return model.SerializeToString()
