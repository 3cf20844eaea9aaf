"""Where a variant's drift comes from: the reference graph and the variant's graph run side by side on the same
items, the variant as ONNX Runtime runs it (at its graph optimisation level, fused kernels and all) with the
tensors that stand for the reference's exposed (see :mod:`optbench.explain.graph`); per segment (a node, or the
kernel ORT fuses it into), the error of what it writes against the reference's tensor it stands for, and the error
its inputs already carried; what it *introduces* is the difference, and the ranking is by that.

The error of a tensor is its relative L2 distance from the reference's over every item (||v - r|| / ||r||). A
quantized tensor is read where it is quantized, so the requantization a fused int8 kernel does is counted against
that kernel; quantizing a graph input counts against the node that reads it. The graph outputs' drift of the
same session is judged against the row's (:mod:`optbench.explain.reproduce`) by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optbench.explain.graph import module_path, scope_of
from optbench.explain.reproduce import Reproduction

EPS = 1e-12


@dataclass(frozen=True)
class NodeDrift:
    node: str
    op_type: str
    module: str | None
    depth: int
    order: int
    error: float                 # rel. L2 of the node's output against the reference's (its worst output)
    inputs_error: float | None   # the largest rel. L2 among its activation inputs; None: none could be compared
    introduced: float            # error - inputs_error (error alone where the inputs could not be compared)
    group: str                   # the node group a search moves between precisions (its scope)
    converted: bool = True       # the variant changed its precision (a fallback of its group changes something)
    nodes: tuple[str, ...] = ()  # the variant's nodes it stands for (a fused segment's; empty: the node alone)
    compared: str | None = None  # the reference tensor its output was compared with
    reference_nodes: tuple[str, ...] = ()  # the reference's nodes computing that tensor (a folded Relu among them)
    reference_ops: tuple[str, ...] = ()
    selects: bool = False        # it only selects or rearranges its input's values at its quantization: introduces
                                 # nothing (its error is that of the part of the input it selects)

    def members(self) -> tuple[str, ...]:
        return self.nodes or (self.node,)


@dataclass
class Localization:
    reference: str
    variant: str
    items: int
    nodes: list[NodeDrift]                    # in graph order
    outputs: dict[str, float] = field(default_factory=dict)  # each graph output's rel. L2 against the fp32 graph
    unmatched: list[str] = field(default_factory=list)       # variant nodes whose outputs the reference lacks
    notes: list[str] = field(default_factory=list)
    all_nodes: list[str] = field(default_factory=list)       # every node of the variant but its wrappers
    reproduction: Reproduction | None = None  # whether the session explained reproduces the row (None: unchecked)

    @property
    def reproduced(self) -> bool:
        return self.reproduction is not None and self.reproduction.reproduced

    def ranked(self, n: int | None = None) -> list[NodeDrift]:
        """Nodes by the error they introduce, largest first (ties: earlier in the graph first)."""
        out = sorted(self.nodes, key=lambda d: (-d.introduced, d.order))
        return out[:n] if n else out

    def groups(self, converted_only: bool = False) -> list[tuple[str, float, list[str]]]:
        """Node groups by the error their nodes introduce (summed over the positive ones), largest first, then in
        graph order: (group, introduced, node names in graph order). ``converted_only``: groups holding a node
        whose precision the variant changed (moving another group changes nothing), summed over those nodes (a
        float Sigmoid after a quantized Conv "introduces" what it amplifies of its input's error, and moving it
        changes nothing)."""
        acc: dict[str, list] = {}
        for d in self.nodes:
            entry = acc.setdefault(d.group, [0.0, [], d.order, False])
            entry[0] += max(d.introduced, 0.0) if d.converted or not converted_only else 0.0
            entry[1] += [n for n in d.members() if n not in entry[1]]
            entry[3] = entry[3] or d.converted
        ranked = sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[1][2]))
        return [(g, v[0], v[1]) for g, v in ranked if v[3] or not converted_only]

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "variant": self.variant, "items": self.items,
                "nodes": [asdict(d) for d in self.nodes], "outputs": self.outputs, "unmatched": self.unmatched,
                "notes": self.notes, "all_nodes": self.all_nodes,
                "reproduction": self.reproduction.to_json() if self.reproduction is not None else None}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Localization:
        nodes = [NodeDrift(**{**n, **{k: tuple(n[k]) for k in ("nodes", "reference_nodes", "reference_ops") if k in n}})
                 for n in d["nodes"]]
        return cls(d["reference"], d["variant"], int(d["items"]), nodes,
                   dict(d.get("outputs") or {}), list(d.get("unmatched") or []), list(d.get("notes") or []),
                   list(d.get("all_nodes") or []), Reproduction.from_json(d.get("reproduction")))


def _session(model: bytes, threads: int | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


class _Accumulator:
    """Sums of squared differences and squared reference values per tensor, over batches."""

    def __init__(self) -> None:
        self.diff: dict[str, float] = {}
        self.ref: dict[str, float] = {}

    def add(self, name: str, v: np.ndarray, r: np.ndarray) -> None:
        if v.shape != r.shape or r.dtype.kind not in "fc" or np.asarray(v).dtype.kind not in "fc":
            return
        a = np.asarray(v, dtype=np.float64).ravel()
        b = np.asarray(r, dtype=np.float64).ravel()
        d = a - b
        diff = float(np.dot(d, d))
        ref = float(np.dot(b, b))
        if not (np.isfinite(diff) and np.isfinite(ref)):  # a non-finite value on either side: element by element
            d = np.where(np.isfinite(a) & np.isfinite(b), d, np.where(np.isnan(a) == np.isnan(b), 0.0, 1e30))
            diff = float(np.dot(d, d))
            ref = float(np.sum(np.where(np.isfinite(b), b * b, 0.0)))
        self.diff[name] = self.diff.get(name, 0.0) + diff
        self.ref[name] = self.ref.get(name, 0.0) + ref

    def error(self, name: str) -> float | None:
        if name not in self.diff:
            return None
        return float(np.sqrt(self.diff[name]) / max(np.sqrt(self.ref[name]), EPS))


def localize(reference: Path, variant: Path, batches: Iterable[tuple[dict[str, np.ndarray], int]],
             group_of=scope_of, level: str = "all", threads: int | None = None,
             check: Callable[[Callable, str | None], Reproduction] | None = None) -> Localization:
    """Run both graphs on ``batches`` ((feeds by input name, items in it), as :meth:`Items.batches` yields them), the
    variant at ORT's optimisation ``level`` with its points exposed; the drift per segment. ``check``: called with
    the variant session's inference (feeds → its graph outputs) and what exposing changed in its kernels, it says
    whether that session reproduces the row (kept as ``reproduction``)."""
    from optbench.explain import kernels as k
    from optbench.explain.graph import exposed, plan

    # quantized tensors exposed in the file: ORT still fuses the kernels around them (at most a transpose back from
    # the layout its kernels use is added); that graph, as ORT optimised it, is run as it is with the other tensors
    # it holds exposed, so exposing them changes nothing
    quantized = [pt.tensor for pt in plan(reference, variant).points if pt.scale is not None]
    ran = k.optimised(exposed(variant, quantized), level, threads)
    changed = k.difference(k.kernels(k.optimised(str(variant), level, threads)), k.kernels(ran))
    p = plan(reference, variant, k.holding(ran))
    at = {pt.at: pt for pt in p.points}
    ref_sess = _session(exposed(reference, sorted({pt.reference for pt in p.points} | set(p.outputs))))
    var_sess = k.session(k.with_outputs(ran, sorted(at)), threads)
    acc, out_acc = _Accumulator(), _Accumulator()
    items = 0
    for feeds, real in batches:
        r_out = _run(ref_sess, feeds)
        v_out = _run(var_sess, feeds)
        for name, pt in at.items():
            if pt.reference in r_out and name in v_out:
                acc.add(name, p.dequantized(pt, v_out[name]), r_out[pt.reference])
        for name in p.outputs:
            if name in r_out and name in v_out:
                out_acc.add(name, v_out[name], r_out[name])
        items += real
    loc = _drifts(p, acc, items, group_of)
    loc.reference, loc.variant = str(reference), str(variant)
    loc.outputs = {o: e for o in p.outputs if (e := out_acc.error(o)) is not None}
    if changed:
        loc.notes.append(f"exposing the compared tensors changed the kernels ONNX Runtime runs: {changed}")
    if check is not None:
        inputs = {i.name for i in var_sess.get_inputs()}

        def infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            values = var_sess.run(p.outputs, {k: v for k, v in feeds.items() if k in inputs})
            return dict(zip(p.outputs, values))
        loc.reproduction = check(infer, changed)
    return loc


def _run(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    inputs = {i.name for i in sess.get_inputs()}
    values = sess.run(names, {k: v for k, v in feeds.items() if k in inputs})
    return dict(zip(names, values))


def _drifts(p: Any, acc: _Accumulator, items: int, group_of) -> Localization:
    by_class = {s.point.reference: s for s in p.segments}
    error_of = {s.point.reference: acc.error(s.point.at) for s in p.segments}
    nodes, unmatched, selecting = [], list(p.unmatched), set()
    for s in p.segments:
        error = error_of[s.point.reference]
        if error is None:
            unmatched += [n for n in s.nodes if n not in unmatched]
            continue
        ins = [0.0 if c in p.inputs else error_of.get(c) if c in by_class else None for c in s.inputs]
        known = [e for e in ins if e is not None]
        inputs_error = max(known) if known else (0.0 if not s.inputs else None)
        introduced = error - inputs_error if inputs_error is not None else error
        # a Gather of one time step reads a part of its input whose error can be far from the whole input's: the
        # difference is no error of its own (its values are its input's, at the input's quantization)
        selects = s.selects and len(s.inputs) == 1 and len(known) == 1 and (
            s.inputs[0] in p.inputs and s.point.scale is None
            or s.inputs[0] in by_class and not p.requantizes(s.point, by_class[s.inputs[0]].point))
        if selects:
            introduced = 0.0
            selecting.update(s.nodes)
        nodes.append(NodeDrift(s.node, s.op_type, module_path(s.node), s.depth, s.order, error, inputs_error,
                               introduced, group_of(s.node), s.converted, s.nodes, s.point.reference,
                               s.reference_nodes, s.reference_ops, selects))
    notes = []
    if unmatched:
        notes.append(f"{len(unmatched)} node(s) of the variant write tensors the reference graph does not have "
                     f"(fused or renamed by its conversion) and feed no compared tensor: not ranked")
    if selecting:
        notes.append(f"{len(selecting)} node(s) only select or rearrange values of their input at its quantization "
                     "(Gather, Slice, Split, Reshape, ...): they introduce nothing; the error shown is that of the part "
                     "of the input they select")
    if p.folded:
        notes.append(f"{len(p.folded)} activation(s) of the fp32 graph folded into the node before them by the "
                     "conversion (the quantization range clips): each compared after the folded activation")
    return Localization("", "", items, nodes, {}, unmatched, notes, p.all_nodes)
