"""Where a variant's drift comes from: the reference graph and the variant's graph run side by side on the same
items with every activation exposed; per node, the error of its output against the reference's and the error its
inputs already carried; what the node *introduces* is the difference, and the ranking is by that.

The error of a tensor is its relative L2 distance from the reference's over every item (||v - r|| / ||r||). A
node's input error is the largest of its activation inputs' errors (graph inputs carry none), taken at the
tensor its producer wrote, before any Q/DQ pair on the way: so quantizing a node's input activation counts against
the node that reads it, which is the node a fallback would move to float.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optbench.explain.graph import Graph, read_graph, scope_of

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


@dataclass
class Localization:
    reference: str
    variant: str
    items: int
    nodes: list[NodeDrift]                    # in graph order
    outputs: dict[str, float] = field(default_factory=dict)  # each graph output's rel. L2
    unmatched: list[str] = field(default_factory=list)       # variant nodes whose outputs the reference lacks
    notes: list[str] = field(default_factory=list)
    all_nodes: list[str] = field(default_factory=list)       # every node of the variant but its wrappers

    def ranked(self, n: int | None = None) -> list[NodeDrift]:
        """Nodes by the error they introduce, largest first (ties: earlier in the graph first)."""
        out = sorted(self.nodes, key=lambda d: (-d.introduced, d.order))
        return out[:n] if n else out

    def groups(self, converted_only: bool = False) -> list[tuple[str, float, list[str]]]:
        """Node groups by the error their nodes introduce (summed over the positive ones), largest first, then in
        graph order: (group, introduced, node names in graph order). ``converted_only``: groups holding a node
        whose precision the variant changed (moving another group changes nothing)."""
        acc: dict[str, list] = {}
        for d in self.nodes:
            entry = acc.setdefault(d.group, [0.0, [], d.order, False])
            entry[0] += max(d.introduced, 0.0)
            entry[1].append(d.node)
            entry[3] = entry[3] or d.converted
        ranked = sorted(acc.items(), key=lambda kv: (-kv[1][0], kv[1][2]))
        return [(g, v[0], v[1]) for g, v in ranked if v[3] or not converted_only]

    def to_json(self) -> dict[str, Any]:
        return {"reference": self.reference, "variant": self.variant, "items": self.items,
                "nodes": [asdict(d) for d in self.nodes], "outputs": self.outputs, "unmatched": self.unmatched,
                "notes": self.notes, "all_nodes": self.all_nodes}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Localization:
        return cls(d["reference"], d["variant"], int(d["items"]), [NodeDrift(**n) for n in d["nodes"]],
                   dict(d.get("outputs") or {}), list(d.get("unmatched") or []), list(d.get("notes") or []),
                   list(d.get("all_nodes") or []))


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
        a, b = np.asarray(v, dtype=np.float64), np.asarray(r, dtype=np.float64)
        d = np.where(np.isfinite(a) & np.isfinite(b), a - b, np.where(np.isnan(a) == np.isnan(b), 0.0, 1e30))
        self.diff[name] = self.diff.get(name, 0.0) + float(np.sum(d * d))
        self.ref[name] = self.ref.get(name, 0.0) + float(np.sum(np.where(np.isfinite(b), b * b, 0.0)))

    def error(self, name: str) -> float | None:
        if name not in self.diff:
            return None
        return float(np.sqrt(self.diff[name]) / max(np.sqrt(self.ref[name]), EPS))


def localize(reference: Path, variant: Path, batches: Iterable[tuple[dict[str, np.ndarray], int]],
             group_of=scope_of) -> Localization:
    """Run both graphs on ``batches`` ((feeds by input name, items in it), as :meth:`Items.batches` yields them) with
    their activations exposed; the drift per node."""
    from optbench.explain.graph import exposed

    ref_g = read_graph(reference)
    var_g = read_graph(variant, ref_g)
    ref_names = {o for n in ref_g.nodes for o in n.outputs} | set(ref_g.outputs)
    common = [o for o in dict.fromkeys([o for n in var_g.nodes for o in n.outputs] + var_g.outputs) if o in ref_names]
    at = {o: var_g.read_at.get(o, o) for o in common}  # where the variant holds each compared tensor
    ref_sess = _session(exposed(reference, common))
    var_sess = _session(exposed(variant, sorted(set(at.values()))))
    acc = _Accumulator()
    items = 0
    for feeds, real in batches:
        r_out = _run(ref_sess, feeds)
        v_out = _run(var_sess, feeds)
        for name in common:
            if name in r_out and at[name] in v_out:
                acc.add(name, v_out[at[name]], r_out[name])
        items += real
    return _drifts(ref_g, var_g, acc, items, group_of)


def _run(sess, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    inputs = {i.name for i in sess.get_inputs()}
    values = sess.run(names, {k: v for k, v in feeds.items() if k in inputs})
    return dict(zip(names, values))


def _drifts(ref_g: Graph, var_g: Graph, acc: _Accumulator, items: int, group_of) -> Localization:
    inputs = set(var_g.inputs)
    nodes, unmatched = [], []
    for n in var_g.nodes:
        errs = [e for e in (acc.error(o) for o in n.outputs) if e is not None]
        if not errs:
            unmatched.append(n.name)
            continue
        ins = [0.0 if x in inputs else acc.error(x) for x in n.inputs]
        known = [e for e in ins if e is not None]
        inputs_error = max(known) if known else (0.0 if not n.inputs else None)
        error = max(errs)
        introduced = error - inputs_error if inputs_error is not None else error
        nodes.append(NodeDrift(n.name, n.op_type, n.module, n.depth, n.order, error, inputs_error, introduced,
                               group_of(n.name), n.converted))
    outputs = {o: e for o in var_g.outputs if (e := acc.error(o)) is not None}
    notes = []
    if unmatched:
        notes.append(f"{len(unmatched)} node(s) of the variant compute tensors the reference graph does not have "
                     f"(fused or renamed by its conversion): not ranked")
    return Localization(str(ref_g.path), str(var_g.path), items, nodes, outputs, unmatched, notes, var_g.all_nodes)
