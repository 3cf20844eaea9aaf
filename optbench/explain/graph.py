"""Which tensors of a converted ONNX graph stand for which tensors of the fp32 graph it was converted from, read
where the kernels that ran wrote them; and the nodes that compute each of them.

A conversion renames what it wraps: ONNX Runtime's QDQ quantizer feeds a node ``X_DequantizeLinear_Output``
(= DequantizeLinear(QuantizeLinear(X))) where the fp32 graph fed it ``X``, and an fp16 conversion puts Cast nodes
around blocked nodes and graph outputs. Every such wrapper is followed back to the tensor it wraps, so tensors of
the two graphs that hold the same thing meet under one name (a *class*).

ONNX Runtime runs a QDQ graph as fused int8 kernels: DequantizeLinear → Conv → QuantizeLinear becomes one
QLinearConv whose output is the QuantizeLinear's (an 8-bit tensor); the float tensor between Conv and
QuantizeLinear never exists. So a quantized class is read where it is quantized, at the QuantizeLinear's output,
dequantized with its scale and zero point. That is also where an activation the quantizer folded takes effect: ORT's
QDQ quantizer removes a Relu (or Clip) after a Conv, Gemm or MatMul, renames that node's output to the Relu's and
lets the quantization range (u8, zero point 0) clip. Under the Relu's name the Conv's float output holds the
value *before* the activation; after its QuantizeLinear it is the Relu's output, and is compared with the fp32
graph's Relu output. A float tensor renamed across such a fold (no QuantizeLinear after it) is compared with the
activation's input instead: no tensor is compared across a fold.

A :class:`Point` is one such comparison; a :class:`Segment` is the nodes of the converted graph that compute a
point from the points before it (a kernel ORT fuses, with any node whose output the fp32 graph lacks), and the
fp32 graph's nodes between the same tensors (what the segment stands for: a Conv and the Relu folded into it).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

# nodes that only carry a tensor under another name or type: followed back, never ranked
WRAPPERS = {"QuantizeLinear", "DequantizeLinear", "Cast"}
# activations ONNX Runtime's QDQ quantizer removes, leaving the clipping to the quantization of the node before
FOLDABLE = {"Relu", "Clip"}
# nodes whose output is values of their (first) input, selected or rearranged: at their input's quantization they
# introduce nothing, and the error of the part they select can be larger or smaller than that of the whole input
SELECTING = {"Gather", "GatherElements", "GatherND", "Slice", "Split", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
             "Flatten", "Identity", "Expand", "Tile", "DepthToSpace", "SpaceToDepth"}
_FLOAT_TYPES = {1, 10, 11, 16}  # FLOAT, FLOAT16, DOUBLE, BFLOAT16


@dataclass(frozen=True)
class Point:
    tensor: str                  # the converted graph's tensor
    reference: str               # the fp32 graph's tensor it stands for
    scale: str | None = None     # an 8-bit tensor: its quantization's scale and zero point (constants), and axis
    zero_point: str | None = None
    axis: int = 1
    read: str | None = None      # the tensor of the graph ORT runs that holds it (None: under its own name)

    @property
    def at(self) -> str:
        return self.read or self.tensor


@dataclass(frozen=True)
class Segment:
    point: Point
    node: str                    # the converted graph's first node of the segment (the one a table names)
    op_type: str
    nodes: tuple[str, ...]       # the converted graph's compute nodes of the segment, in graph order
    inputs: tuple[str, ...]      # classes it reads: points (by their reference name) or graph inputs
    reference_nodes: tuple[str, ...]  # the fp32 graph's nodes between those inputs and the point
    reference_ops: tuple[str, ...]
    depth: int                   # segments from a graph input
    order: int                   # the position in topological order of the node that writes the point
    converted: bool              # the conversion changed its precision (8-bit or fp16 on the way)
    selects: bool = False        # every node of it only selects or rearranges values (SELECTING)


@dataclass
class Plan:
    """Every point and segment of a converted graph against its fp32 graph."""

    points: list[Point]
    segments: list[Segment]          # in graph order
    inputs: set[str]                 # classes that are graph inputs (no error of their own)
    outputs: list[str]               # the converted graph's outputs
    constants: dict[str, np.ndarray] = field(default_factory=dict)  # scales and zero points of the points
    unmatched: list[str] = field(default_factory=list)   # compute nodes in no segment
    all_nodes: list[str] = field(default_factory=list)   # every node of the converted graph but its wrappers
    folded: list[str] = field(default_factory=list)      # fp32 nodes the conversion removed (folded activations)

    def dequantized(self, p: Point, value: np.ndarray) -> np.ndarray:
        """The tensor read at ``p`` as the float it stands for."""
        if p.scale is None:
            return value
        scale = self.constants[p.scale].astype(np.float64)
        zp = self.constants[p.zero_point].astype(np.float64) if p.zero_point else np.zeros_like(scale)
        if scale.ndim == 1 and value.ndim > 1:  # per channel, along axis
            shape = [1] * value.ndim
            shape[p.axis % value.ndim] = -1
            scale, zp = scale.reshape(shape), zp.reshape(shape)
        return (value.astype(np.float64) - zp) * scale

    def requantizes(self, p: Point, source: Point) -> bool:
        """Whether the value read at ``p`` is quantized otherwise than the value read at ``source`` it was computed
        from (a float ``p`` is not: it holds what its nodes computed from ``source``'s value)."""
        if p.scale is None:
            return False
        if source.scale is None:
            return True
        zero = lambda q: self.constants[q.zero_point] if q.zero_point else np.zeros(1)  # noqa: E731
        return not (np.array_equal(self.constants[p.scale], self.constants[source.scale])
                    and np.array_equal(zero(p), zero(source))
                    and (self.constants[p.scale].size == 1 or p.axis == source.axis))


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


def _name(n: Any) -> str:
    return n.name or n.output[0]


def plan(reference: Path, variant: Path, ran: dict[str, str] | None = None) -> Plan:
    """The points and segments of ``variant`` (a graph converted from ``reference``, the fp32 graph). ``ran``: the
    variant's tensors that the graph ONNX Runtime runs (its optimised graph) holds, each with the name it holds it
    under; a tensor it fused away (a Conv's output inside its FusedConv with the Relu) is no point, its node joins the
    segment of the point after it."""
    import onnx

    ref = onnx.load(str(reference), load_external_data=False).graph
    model = onnx.load(str(variant), load_external_data=False)
    g = model.graph
    ref_nodes = {_name(n) for n in ref.node}
    ref_producer = {o: n for n in ref.node for o in n.output if o}
    ref_inits = {i.name for i in ref.initializer} | {o for n in ref.node if n.op_type == "Constant" for o in n.output}
    ref_tensors = set(ref_producer) | {i.name for i in ref.input}
    ref_order = {_name(n): i for i, n in enumerate(ref.node)}

    constants = _constants(g)
    producer = {o: n for n in g.node for o in n.output if o}
    nodes = [n for n in _topological(g.node, producer) if n.op_type != "Constant"]
    order = {_name(n): i for i, n in enumerate(nodes)}

    def is_wrapper(n) -> bool:
        return n.op_type in WRAPPERS and _name(n) not in ref_nodes

    name_of, read_at = _classes(g, is_wrapper, ref_tensors)
    cls = lambda t: name_of.get(t, t)  # noqa: E731
    root = lambda c: read_at.get(c, c)  # noqa: E731
    floats, half = _float_tensors(model)
    graph_inputs = {i.name for i in g.input if i.name not in constants}

    var_names = {_name(n) for n in g.node}
    first_q: dict[str, Any] = {}  # class -> its first QuantizeLinear (with constant scale and zero point)
    for n in nodes:
        if n.op_type == "QuantizeLinear" and is_wrapper(n) and n.input[1] in constants \
                and (len(n.input) < 3 or not n.input[2] or n.input[2] in constants):
            first_q.setdefault(cls(n.output[0]), n)
    points: dict[str, Point] = {}  # class -> its point
    for n in nodes:
        if is_wrapper(n):
            continue
        for o in n.output:
            c = cls(o)
            if o and c not in points and c in ref_tensors and c not in ref_inits and root(c) == o:
                p = _point(c, o, n, first_q.get(c), floats, ref_producer, var_names)
                if p is not None and (ran is None or p.tensor in ran):
                    points[c] = replace(p, read=ran[p.tensor] if ran and ran[p.tensor] != p.tensor else None)
    inputs = {cls(t) for t in graph_inputs}

    segments, covered = [], set()
    depth_of: dict[str, int] = {}
    stops = {p.reference for p in points.values()} | {i.name for i in ref.input} | ref_inits
    for n in nodes:  # in topological order: a segment's inputs come before it
        for o in n.output:
            c = cls(o)
            if c not in points or root(c) != o:
                continue
            p = points[c]
            members, ins = _segment(n, points, cls, root, producer, is_wrapper, constants, graph_inputs)
            covered.update(_name(m) for m in members)
            refs = _reference_nodes(p.reference, ref_producer, stops - {p.reference})
            refs.sort(key=lambda m: ref_order[_name(m)])
            depth = 1 + max((depth_of.get(i, 0) for i in ins), default=0)
            depth_of[c] = depth
            converted = p.scale is not None or any(
                x in producer and producer[x].op_type == "DequantizeLinear" and is_wrapper(producer[x])
                for m in members for x in m.input) or any(x in half for m in members for x in m.output)
            members.sort(key=lambda m: order[_name(m)])
            head = members[0]  # named by its first node (the Conv of a Conv+Relu ORT fused)
            segments.append(Segment(p, _name(head), head.op_type, tuple(_name(m) for m in members), tuple(sorted(ins)),
                                    tuple(_name(m) for m in refs), tuple(m.op_type for m in refs), depth,
                                    order[_name(n)], converted,
                                    all(m.op_type in SELECTING for m in members)))
    compute = [n for n in nodes if not is_wrapper(n)]
    folded = [_name(n) for n in ref.node if n.op_type in FOLDABLE and _name(n) not in var_names]
    used = {x for p in points.values() for x in (p.scale, p.zero_point) if x}
    return Plan(list(points.values()), segments, inputs, [o.name for o in g.output],
                {k: v for k, v in constants.items() if k in used},
                [_name(n) for n in compute if _name(n) not in covered], [_name(n) for n in compute], folded)


def _point(c: str, root: str, writer: Any, q: Any, floats: set, ref_producer: dict, var_names: set) -> Point | None:
    """Where class ``c`` (written by ``writer`` as ``root``) is read: at its first QuantizeLinear ``q``, dequantized
    (the value a fused kernel writes, and the next node reads); else at the float root, compared with the tensor of
    the fp32 graph it holds (the input of an activation folded away, where one was)."""
    if q is not None:
        axis = next((a.i for a in q.attribute if a.name == "axis"), 1)
        return Point(q.output[0], c, q.input[1], q.input[2] if len(q.input) > 2 and q.input[2] else None, axis)
    if root not in floats:
        return None
    act = ref_producer.get(c)
    if act is not None and act.op_type in FOLDABLE and writer.op_type != act.op_type and _name(act) not in var_names:
        return Point(root, act.input[0])
    return Point(root, c)


def _segment(writer: Any, points: dict, cls, root, producer: dict, is_wrapper, constants: dict,
             graph_inputs: set) -> tuple[list, set[str]]:
    """The compute nodes from the points before ``writer`` up to it, and the classes they read (points or graph
    inputs)."""
    members, ins, seen, stack = [], set(), set(), [writer]
    while stack:
        n = stack.pop()
        if _name(n) in seen:
            continue
        seen.add(_name(n))
        members.append(n)
        for x in n.input:
            if not x or x in constants:
                continue
            c = cls(x)
            if c in points:
                ins.add(c)
                continue
            r = root(c)
            if r in graph_inputs:
                ins.add(c)
            elif r in constants or r not in producer:
                continue
            elif not is_wrapper(producer[r]):
                stack.append(producer[r])
    return members, ins


def _reference_nodes(tensor: str, ref_producer: dict, stops: set[str]) -> list:
    """The fp32 graph's nodes that compute ``tensor`` from the tensors in ``stops``."""
    out, seen, stack = [], set(), [tensor]
    while stack:
        n = ref_producer.get(stack.pop())
        if n is None or _name(n) in seen:
            continue
        seen.add(_name(n))
        out.append(n)
        stack += [x for x in n.input if x and x not in stops]
    return out


def _constants(g: Any) -> dict[str, np.ndarray]:
    """Initializers and Constant nodes' values, by name."""
    from onnx import numpy_helper

    out = {}
    for i in g.initializer:
        try:
            out[i.name] = numpy_helper.to_array(i)
        except Exception:  # external data not loaded: a weight, known to be constant, value unread
            out[i.name] = np.zeros(0)
    for n in g.node:
        if n.op_type == "Constant":
            value = next((a.t for a in n.attribute if a.name == "value"), None)
            out[n.output[0]] = numpy_helper.to_array(value) if value is not None else np.zeros(0)
    return out


def _classes(g: Any, is_wrapper, reference: set[str] | None) -> tuple[dict[str, str], dict[str, str]]:
    """Tensors joined by wrappers, each class under one name (the member the reference has, else its root, the
    tensor a wrapped node wrote): tensor → that name, and that name → the root to read its value at."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for n in g.node:
        if is_wrapper(n) and n.input and n.input[0]:
            for o in n.output:
                parent[find(o)] = find(n.input[0])
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
    out: list = []
    pending = list(nodes)
    available: set[str] = set()
    while pending:
        rest = []
        for n in pending:
            if all(not x or x not in producer or x in available for x in n.input):
                out.append(n)
                available.update(n.output)
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
