"""How optbench reads a model: every input and output, the batch axis of each output with its evidence.

Verdicts compare a variant's outputs with the reference's item by item, so optbench must know where each
output keeps its batch. It never assumes axis 0: before any variant runs, the model is run on a few data
items at two batch sizes (7 and 11 where the batch is dynamic) and the axis that follows the batch is the
batch axis. What the graph declares, and what the spec declares (``outputs: - {name, batch_axis}``), are
checked against what the run sees. Where the evidence is ambiguous (a static batch of 1 with nothing that
confirms which axis holds it, two axes that scale, none), optbench stops with one line naming the output, what
it saw, and the spec line that settles it.

Batch axes here are ``int`` (an axis of the output), ``"stack"`` (one item per call and no batch axis in the
output: each call's output is one item's) or ``None`` (the output does not hold items: it is not compared).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optbench.errors import SpecError

# Batch sizes a dynamic-batch model is read at: the axis that goes 7 -> 11 holds the batch. Two coprime sizes that
# no other dim is likely to track, and off the small sizes users plan (1, 2, 4, 8) and the reference's 64.
PROBES = (7, 11)
FILE = "interpretation.json"


@dataclass(frozen=True)
class OutputReading:
    name: str
    dtype: str
    declared: list | None          # the graph's declared dims (ONNX), None where it declares none
    seen: dict[str, list[int]]     # batch size -> observed shape
    batch_axis: int | str | None   # int | "stack" | None (not compared)
    evidence: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Interpretation:
    batch: str                     # "dynamic", "fixed N" or "none"
    batch_evidence: str
    inputs: list[dict]             # name, spec shape, graph dims, batch axis
    points: list[dict]             # batch, dims, fed shape per input (and how the data was fitted)
    outputs: list[OutputReading]
    read_at: list[int]             # the batch sizes the model was run at to read it
    repeat: dict | None = None     # the last reading run again on the same items (optbench.statefulness.Repeat)

    @property
    def fixed_batch(self) -> int | None:
        return int(self.batch.split()[1]) if self.batch.startswith("fixed") else None

    def output_axes(self) -> dict[str, int | str | None]:
        return {o.name: o.batch_axis for o in self.outputs}

    def warnings(self) -> list[str]:
        return [w for o in self.outputs for w in o.warnings]

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Interpretation:
        outs = [OutputReading(**o) for o in data.get("outputs", [])]
        return cls(**{**data, "outputs": outs})

    def repeated(self):
        """The repeat reading (:class:`optbench.statefulness.Repeat`), None where none was made."""
        from optbench.statefulness import Repeat

        return Repeat(**self.repeat) if self.repeat else None

    def compact(self) -> dict:
        """What every row keeps: the batch, each output's axis and evidence, the warnings, and where the model is
        judged although it does not repeat itself (stateful: accept), the warning every row then carries."""
        repeat = self.repeated()
        return {"batch": self.batch, "batch_evidence": self.batch_evidence, "outputs": {o.name: {"batch_axis": o.batch_axis, "evidence": o.evidence}
                                                 for o in self.outputs}, "warnings": self.warnings(),
                "stateful": repeat.warning() if repeat else None}

    def table(self) -> str:
        lines = [f"model batch: {self.batch} ({self.batch_evidence})"]
        for i in self.inputs:
            lines.append(f"  input  {i['name']}: spec {i['shape']}, graph {_dims(i.get('graph'))}, "
                         f"batch axis {_axis(i.get('batch_axis'))}")
        for p in self.points:
            fed = "; ".join(f"{k} {v['shape']}" + (f" ({v['fit']})" if v.get("fit") else "") for k, v in p["fed"].items())
            lines.append(f"  point  batch {p['batch']} {p['dims'] or ''}: fed {fed}")
        for o in self.outputs:
            seen = ", ".join(f"bs{b}: {s}" for b, s in o.seen.items())
            lines.append(f"  output {o.name} ({o.dtype}): declared {_dims(o.declared)}, "
                         f"seen {seen}; batch axis {_axis(o.batch_axis)}: {o.evidence}")
            lines += [f"         warning: {w}" for w in o.warnings]
        if (repeat := self.repeated()) is not None:
            lines.append(f"  {repeat.line()}")
        return "\n".join(lines)


def _dims(dims: list | None) -> str:
    """Declared dims for the table: long symbolic expressions (an exporter's shape arithmetic) shortened."""
    if dims is None:
        return "-"
    return "[" + ", ".join(repr(d) if not isinstance(d, str) or len(d) <= 24 else repr(d[:20] + "...")
                           for d in dims) + "]"


def _axis(a: Any) -> str:
    return {None: "none", "stack": "none (one item per call)"}.get(a, str(a)) if not isinstance(a, int) else str(a)


def save(run_dir: Path, interp: Interpretation) -> None:
    (run_dir / FILE).write_text(json.dumps(interp.to_json(), indent=1))


def load(run_dir: Path) -> Interpretation | None:
    """The run's interpretation; None for run directories made before it existed."""
    path = Path(run_dir) / FILE
    return Interpretation.from_json(json.loads(path.read_text())) if path.exists() else None


# ---------------------------------------------------------------- what the graph declares
def graph_facts(path: Path) -> dict:
    """Declared dims of the graph's inputs and outputs (ints, symbols, '?' for unnamed dynamic dims)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}

    def dims(v) -> list | None:
        t = v.type.tensor_type
        if not t.HasField("shape"):
            return None
        return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]

    return {"inputs": {i.name: dims(i) for i in proto.graph.input if i.name not in inits},
            "outputs": {o.name: dims(o) for o in proto.graph.output}}


def fixed_batch_of(spec: Any, graph: dict | None) -> tuple[int | None, str]:
    """The batch the graph fixes at the spec's batch axis (the spec writes 'batch', the graph a number)."""
    for i in spec.inputs:
        dims = (graph or {}).get("inputs", {}).get(i.name)
        if i.batch_axis is not None and dims and i.batch_axis < len(dims) and isinstance(dims[i.batch_axis], int) \
                and dims[i.batch_axis] > 0:
            return dims[i.batch_axis], f"graph input '{i.name}' fixes axis {i.batch_axis} at {dims[i.batch_axis]}"
    return None, ""


# ---------------------------------------------------------------- reading the model
def read_model(spec: Any, infer: Callable[[dict], dict[str, np.ndarray]], items: Any, graph: dict | None,
               point_items: Callable[[int, dict], Any] | None = None,
               reset_methods: list[str] | None = None) -> Interpretation:
    """Run ``infer`` on a few items and decide how every output is read; raises SpecError where it cannot, and
    where the model answers the same items differently when run twice (see :mod:`optbench.statefulness`;
    ``reset_methods``: a torch module's reset-like methods, named in that message)."""
    from optbench import statefulness

    has_batch = any(i.batch_axis is not None for i in spec.inputs)
    fixed, why_fixed = fixed_batch_of(spec, graph)
    declared = {o.name: o.batch_axis for o in spec.outputs if o.batch_axis is not None}
    if not has_batch:
        batch, evidence, probes = "none", "no input has a 'batch' dimension: one item per call", [1]
    elif fixed is not None:
        batch, evidence, probes = f"fixed {fixed}", why_fixed, [fixed]
    else:
        batch, evidence, probes = "dynamic", f"ran at batch {PROBES[0]} and {PROBES[1]}", list(PROBES)
    seen: dict[int, dict[str, np.ndarray]] = {}
    for b in probes:
        try:
            seen[b] = infer(items.layout(np.arange(b) % len(items)))
        except Exception as e:
            if batch != "dynamic" or b != probes[0]:
                raise
            # a model that accepts only one item per call although the graph does not say so (a torch reshape)
            why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            seen = {1: infer(items.layout(np.arange(1) % len(items)))}
            batch, evidence, probes = "fixed 1", f"it fails at batch {b} ({why}) and runs at batch 1", [1]
            break
    last = probes[-1]  # run again right away: a state shaped by the batch fits the same batch
    repeat = statefulness.repeat_of(spec, last, seen[last], infer(items.layout(np.arange(last) % len(items))))
    statefulness.check(spec, repeat, reset_methods)
    outputs = [_read_output(name, seen, batch, declared.get(name, _UNSET), (graph or {}).get("outputs", {}).get(name))
               for name in seen[probes[0]]]
    if unknown := sorted(set(declared) - set(seen[probes[0]])):
        raise SpecError(f"outputs declares batch_axis for {unknown}, which the model does not return",
                        field="outputs", expected=f"some of {list(seen[probes[0]])}", found=repr(unknown))
    inputs = [{"name": i.name, "shape": list(i.shape), "graph": ((graph or {}).get("inputs") or {}).get(i.name),
               "batch_axis": i.batch_axis} for i in spec.inputs]
    return Interpretation(batch, evidence, inputs, fed_points(spec, point_items) if point_items else [], outputs,
                          probes, repeat.to_json())


_UNSET = object()


def _settle(name: str, axis: Any) -> str:
    """The spec line that settles an output's batch axis, pasteable: a name YAML would not read back as this
    string (``387``, ``true``, ``a: b``) is quoted."""
    import yaml

    try:
        plain = yaml.safe_load(f"{{name: {name}}}") == {"name": name}
    except yaml.YAMLError:
        plain = False
    return f"outputs: - {{name: {name if plain else json.dumps(name)}, batch_axis: {axis}}}"


def _read_output(name: str, seen: dict[int, dict], batch: str, declared: Any, graph_dims: list | None) -> OutputReading:
    shapes = {b: list(np.shape(out[name])) for b, out in seen.items()}
    dtype = str(np.asarray(next(iter(seen.values()))[name]).dtype)
    warnings = _contradictions(name, graph_dims, shapes)
    base = {"name": name, "dtype": dtype, "declared": graph_dims, "seen": {str(b): s for b, s in shapes.items()}}
    if batch == "dynamic":
        axis, evidence = _dynamic_axis(name, shapes, declared, graph_dims)
    else:
        axis, evidence = _static_axis(name, shapes, batch, declared, graph_dims, warnings)
    return OutputReading(**base, batch_axis=axis, evidence=evidence, warnings=warnings)


def _contradictions(name: str, graph_dims: list | None, shapes: dict[int, list[int]]) -> list[str]:
    """Where the graph's declared shape disagrees with the shapes the run sees (the graph is then wrong)."""
    if graph_dims is None:
        return []
    out = []
    for b, s in shapes.items():
        if len(s) != len(graph_dims):
            out.append(f"output '{name}': the graph declares rank {len(graph_dims)} {graph_dims}, the run sees "
                       f"{s} at batch {b}")
            break
        bad = [i for i, (g, x) in enumerate(zip(graph_dims, s)) if isinstance(g, int) and g > 0 and g != x]
        if bad:
            out.append(f"output '{name}': the graph declares {graph_dims}, the run sees {s} at batch {b}")
            break
    return out


def _dynamic_axis(name: str, shapes: dict[int, list[int]], declared: Any, graph_dims: list | None) -> tuple[Any, str]:
    (b0, s0), (b1, s1) = list(shapes.items())[:2]
    if len(s0) != len(s1):
        raise SpecError(f"output '{name}' changes rank with the batch ({s0} at batch {b0}, {s1} at batch {b1}); "
                        f"optbench cannot split it into items", field="outputs",
                        expected=f"an output that holds its batch on one axis, or {_settle(name, 'none')} "
                                 "(not compared)", found=f"{s0} -> {s1}")
    moved = [i for i in range(len(s0)) if s0[i] != s1[i]]
    follows = [i for i in moved if s0[i] == b0 and s1[i] == b1]
    sym = ""
    if graph_dims and len(graph_dims) == len(s0):
        syms = [i for i, g in enumerate(graph_dims) if isinstance(g, str) and g != "?"]
        sym = f"; the graph's dims {graph_dims}"
        if len(follows) == 1 and follows[0] in syms:
            sym = f"; the graph names it '{graph_dims[follows[0]]}'"
    seen = f"{s0} at batch {b0}, {s1} at batch {b1}"
    if declared is not _UNSET:
        if declared == "none":
            if moved:
                raise SpecError(f"output '{name}' is declared without a batch axis, but axis {moved[0]} follows the "
                                f"batch ({seen})", field="outputs", expected=_settle(name, moved[0]), found=seen)
            return None, f"declared batch_axis: none; no axis follows the batch ({seen}): not compared per item"
        if moved != [declared] or follows != [declared]:
            raise SpecError(f"output '{name}' is declared with batch_axis {declared}, but the run sees {seen}",
                            field="outputs", expected=f"axis {declared} going {b0} -> {b1} and no other axis moving",
                            found=seen)
        return declared, f"declared batch_axis: {declared}, confirmed: axis {declared} went {b0} -> {b1} ({seen})"
    if moved == follows and len(follows) == 1:
        return follows[0], f"axis {follows[0]} follows the batch ({seen}){sym}"
    if not moved:
        raise SpecError(f"output '{name}': no axis follows the batch ({seen}), so it cannot be split into items",
                        field="outputs", expected=f"{_settle(name, 'none')} to leave it uncompared, or a model "
                                                  "output that holds its batch", found=seen)
    hint = _settle(name, follows[0] if follows else "N")
    raise SpecError(f"output '{name}': cannot tell its batch axis: axes {moved} change with the batch ({seen})",
                    field="outputs", expected=f"{hint} in the spec", found=seen)


def _static_axis(name: str, shapes: dict[int, list[int]], batch: str, declared: Any, graph_dims: list | None,
                 warnings: list[str]) -> tuple[Any, str]:
    b, s = next(iter(shapes.items()))
    one_per_call = batch == "none" or b == 1
    if declared is not _UNSET:
        if declared == "none":
            if one_per_call:
                return "stack", "declared batch_axis: none; one item per call, so each call's output is one item's"
            return None, "declared batch_axis: none: not compared per item"
        if declared >= len(s) or s[declared] != b:
            raise SpecError(f"output '{name}' is declared with batch_axis {declared}, but its shape at batch {b} is "
                            f"{s}", field="outputs", expected=f"an axis of size {b}", found=str(s))
        return declared, f"declared batch_axis: {declared} (size {b} at batch {b}, as declared)"
    if batch == "none":
        return "stack", "no input has a batch axis: each call's output is one item's"
    candidates = [i for i, x in enumerate(s) if x == b]
    confirmed = graph_dims is not None and len(graph_dims) == len(s) and not warnings and len(candidates) == 1 \
        and graph_dims[candidates[0]] == b
    if confirmed:
        return candidates[0], (f"static batch {b}: axis {candidates[0]} is the only axis of size {b}, and the graph "
                               f"declares {graph_dims}, as the run sees it")
    told = f"the graph declares {graph_dims}" if graph_dims is not None else "the graph declares no shape"
    why = "; ".join(warnings) or told
    guess = candidates[0] if len(candidates) == 1 else ("none" if not candidates else "N")
    raise SpecError(f"output '{name}': the model's batch is fixed at {b} ({batch}), so optbench cannot see which "
                    f"axis holds it: the run sees {s}, {why}", field="outputs",
                    expected=f"the batch axis declared in the spec, e.g. {_settle(name, guess)}", found=str(s))


# ---------------------------------------------------------------- the data fed at each point
def fed_points(spec: Any, point_items: Callable[[int, dict], Any]) -> list[dict]:
    """The shape fed to each input at each (batch, dims) point, and how the data was fitted to it."""
    from optbench.plan import points

    out = []
    for b, dims in points(spec):
        items = point_items(b, dims)
        fed = {}
        for i in spec.inputs:
            if i.value is not None:
                fed[i.name] = {"shape": [d if isinstance(d, int) else 1 for d in i.shape], "fit": "constant"}
                continue
            item = list(items.inputs[i.name].shape[1:])
            shape = item[:]
            if i.batch_axis is not None:
                shape.insert(i.batch_axis, b)
            fed[i.name] = {"shape": shape, "fit": (items.fitted or {}).get(i.name)}
        out.append({"batch": b, "dims": dims, "fed": fed})
    return out


# ---------------------------------------------------------------- at plan time
def model_fixed_batch(spec: Any, spec_path: Path) -> tuple[int | None, str]:
    """The batch a model file fixes (ONNX sources; torch models show theirs when run builds them)."""
    if spec.model.source != "onnx":
        return None, ""
    from optbench.paths import resolve_model_file

    return fixed_batch_of(spec, graph_facts(resolve_model_file(spec.model.path, spec_path)))


# model sources that are files: plan loads them and runs their reference to read them, as run does
FILE_SOURCES = ("onnx", "torchscript", "exported", "tensorflow", "tflite", "openvino")


def read_at_plan(spec: Any, spec_path: Path) -> tuple[Interpretation | None, str]:
    """For a model file of any format, the interpretation read by running its reference (its own framework on the
    CPU, the inference run uses) on the spec's own data; for models that are built (and trained) by run, the inputs
    and points only, and why the outputs wait for ``run``."""
    from optbench.data import load_splits

    if spec.data.source == "text":
        return None, "the data is tokenized by the model's tokenizer: run reads the model"
    splits = load_splits(spec, spec_path.parent)
    first = {k: v for k, v in ((spec.variants.shapes or [{}])[0]).items() if k != "batch"}

    def at(b: int, dims: dict) -> Any:
        return splits.eval.at_shape(spec.inputs, dims)

    if spec.model.source not in FILE_SOURCES:
        inputs = [{"name": i.name, "shape": list(i.shape), "graph": None, "batch_axis": i.batch_axis}
                  for i in spec.inputs]
        return (Interpretation("read when run builds the model", "a torch model is built (and trained) by run",
                               inputs, fed_points(spec, at), [], []),
                "outputs: read by `optbench run` at its reference pass, where the model is built")
    infer, graph, resets = reference_of_file(spec, spec_path)
    return read_model(spec, infer, at(0, first), graph, at, resets), ""


def reference_of_file(spec: Any, spec_path: Path) -> tuple[Callable[[dict], dict], dict | None, list[str] | None]:
    """The reference inference of a model file (the very one run uses, so plan and run read the model alike: a torch
    module with its ``model.reset``), the dims the file declares, and a torch module's reset-like methods."""
    from optbench.backends import reference_backend

    if spec.model.source == "onnx":
        from optbench.paths import resolve_model_file

        path = resolve_model_file(spec.model.path, spec_path)
        return reference_backend("onnx").reference_infer(path), graph_facts(path), None
    from optbench.models import load_model

    loaded = load_model(spec.model, spec_path.parent, seed=spec.seed, inputs=spec.inputs)
    if loaded.native is not None:
        return reference_backend(loaded.framework).reference_infer(loaded.native), loaded.native.declared(), None
    from optbench.models.reset import reset_methods, with_reset

    module = with_reset(loaded.module, spec.model, spec_path.parent)
    return reference_backend("torch").reference_infer(module), None, reset_methods(loaded.module)
