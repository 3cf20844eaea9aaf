"""Model sources that arrive as files of a framework: TorchScript, torch.export programs, TensorFlow SavedModels and
frozen graphs, TFLite flatbuffers, OpenVINO IR. Each is loaded by its own framework, and what the spec must choose
(a signature among several, a frozen graph's outputs) is an error naming the field, never a guess."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optbench.errors import SpecError
from optbench.models.base import LoadedModel, NativeModel, model_source
from optbench.models.sources import _ident
from optbench.paths import file_digest, resolve_path, tree_digest


def _path(spec, spec_dir: Path) -> Path:
    path = resolve_path(spec.path, spec_dir / "spec.yaml")
    if not path.exists():
        raise SpecError(f"file not found (looked for {path})", field="model.path", found=repr(spec.path))
    return path


def _bad_file(spec, what: str, e: Exception) -> SpecError:
    first = (str(e).strip().splitlines() or [e.__class__.__name__])[0][:200]
    return SpecError(f"not {what}: {e.__class__.__name__}: {first}", field="model.path", found=repr(spec.path))


@model_source("torchscript")
def torchscript_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    import torch

    path = _path(spec, spec_dir)
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise _bad_file(spec, "a TorchScript file (torch.jit.save)", e) from None
    return LoadedModel(module.eval(), identity=_ident(spec, file_digest(path)), from_file=True)


@model_source("exported")
def exported_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    import torch

    from optbench.models.wrappers import ExportedModule

    path = _path(spec, spec_dir)
    try:
        program = torch.export.load(str(path))
    except Exception as e:
        raise _bad_file(spec, "a torch.export program (torch.export.save, .pt2)", e) from None
    return LoadedModel(ExportedModule(program), identity=_ident(spec, file_digest(path)), from_file=True)


# ---------------------------------------------------------------- TensorFlow
@model_source("tensorflow")
def tensorflow_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    from optbench.frameworks import tensorflow

    tf = tensorflow()
    path = _path(spec, spec_dir)
    native = _saved_model(spec, path, tf) if path.is_dir() else _frozen_graph(spec, path, tf)
    digest = tree_digest(path) if path.is_dir() else file_digest(path)
    return LoadedModel(None, output_names=native.output_names, identity=_ident(spec, digest), framework="tensorflow",
                       native=native)


def _saved_model(spec, path: Path, tf) -> NativeModel:
    try:
        loaded = tf.saved_model.load(str(path), tags=[spec.tag])
    except Exception as e:
        raise _bad_file(spec, f"a SavedModel with tag '{spec.tag}'", e) from None
    key = choose_signature(list(loaded.signatures), spec.signature, "SavedModel")
    fn = loaded.signatures[key]
    _, kwargs = fn.structured_input_signature
    if not kwargs:
        raise SpecError(f"signature '{key}' takes no named inputs", field="model.signature", found=repr(key))
    inputs = [{"model": name, "tensor": f"{s.name or name}:0", "dtype": s.dtype.name,
               "shape": s.shape.as_list() if s.shape.rank is not None else None} for name, s in kwargs.items()]
    outputs = [{"name": name, "tensor": name} for name in sorted(fn.structured_outputs)]  # tf.nest's order
    return NativeModel("tensorflow", "saved_model", str(path), entry=key, tag=spec.tag, inputs=inputs,
                       outputs=outputs)


def choose_signature(found: list[str], asked: str | None, what: str) -> str:
    """The signature to run: the one the spec names, the only one, or TensorFlow Serving's default among several."""
    if not found:
        raise SpecError(f"the {what} has no signatures: nothing says which function to run (save it with "
                        "signatures, e.g. keras model.export(folder) or tf.saved_model.save(obj, folder, "
                        "signatures=...))", field="model.path")
    if asked is not None:
        if asked not in found:
            raise SpecError(f"the {what} has no signature '{asked}'", field="model.signature",
                            expected=f"one of {found}", found=repr(asked))
        return asked
    if len(found) == 1:
        return found[0]
    if "serving_default" in found:
        return "serving_default"
    raise SpecError(f"the {what} has {len(found)} signatures and none is 'serving_default'; choose one",
                    field="model.signature", expected=f"one of {found}", found="none")


def _frozen_graph(spec, path: Path, tf) -> NativeModel:
    graph = tf.compat.v1.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except Exception as e:
        raise _bad_file(spec, "a frozen GraphDef (.pb)", e) from None
    if not graph.node:
        raise SpecError("the .pb holds no graph nodes: not a frozen GraphDef", field="model.path",
                        found=repr(spec.path))
    if variables := [n.name for n in graph.node if n.op in ("VariableV2", "VarHandleOp", "Variable")]:
        raise SpecError(f"the graph holds variables ({variables[0]}, ...): not frozen (freeze it with "
                        "convert_variables_to_constants_v2)", field="model.path", found=repr(spec.path))
    holders = [n for n in graph.node if n.op == "Placeholder"]
    if not holders:
        raise SpecError("the frozen graph has no Placeholder: it takes no inputs", field="model.path")
    inputs = [{"model": n.name, "tensor": f"{n.name}:0", "dtype": tf.dtypes.as_dtype(n.attr["dtype"].type).name,
               "shape": _proto_shape(n.attr["shape"].shape) if "shape" in n.attr else None} for n in holders]
    names = [o.split(":")[0] for o in spec.outputs] if spec.outputs else _terminal_nodes(graph)
    known = {n.name for n in graph.node}
    if unknown := [o for o in names if o not in known]:
        raise SpecError(f"the frozen graph has no node {unknown}", field="model.outputs", found=repr(unknown))
    return NativeModel("tensorflow", "frozen_graph", str(path), inputs=inputs,
                       outputs=[{"name": n, "tensor": f"{n}:0"} for n in names])


def _proto_shape(shape) -> list | None:
    if shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in shape.dim]


def _terminal_nodes(graph) -> list[str]:
    """The graph's one node whose output nothing consumes (bookkeeping nodes aside); several: the spec names them."""
    used = {i.lstrip("^").split(":")[0] for n in graph.node for i in n.input}
    ends = [n.name for n in graph.node if n.name not in used and n.op not in ("Const", "NoOp", "Placeholder",
                                                                               "Assert", "SaveV2", "RestoreV2")]
    if len(ends) != 1:
        raise SpecError(f"the frozen graph ends in {len(ends)} nodes {ends[:6]}; name its outputs",
                        field="model.outputs", expected="the output tensors, e.g. [Identity]", found="none")
    return ends


# ---------------------------------------------------------------- TFLite, OpenVINO
@model_source("tflite")
def tflite_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    from optbench.frameworks import tflite_interpreter

    path = _path(spec, spec_dir)
    interpreter, _ = tflite_interpreter()
    try:
        it = interpreter(model_path=str(path))
    except Exception as e:
        raise _bad_file(spec, "a TFLite flatbuffer", e) from None
    signatures = it.get_signature_list()
    if signatures:
        key = choose_signature(list(signatures), spec.signature, "TFLite file")
        runner = it.get_signature_runner(key)
        ins = runner.get_input_details()
        inputs = [{"model": k, "tensor": d["name"], "dtype": np.dtype(d["dtype"]).name,
                   "shape": [int(x) if x > 0 else None for x in d["shape_signature"]]} for k, d in ins.items()]
        outs = runner.get_output_details()
        outputs = [{"name": k, "tensor": d["name"]} for k, d in outs.items()]
    else:
        if spec.signature:
            raise SpecError("the TFLite file has no signatures", field="model.signature", found=repr(spec.signature))
        key = None
        inputs = [{"model": d["name"].split(":")[0], "tensor": d["name"], "dtype": np.dtype(d["dtype"]).name,
                   "shape": [int(x) if x > 0 else None for x in d["shape_signature"]]} for d in it.get_input_details()]
        outputs = [{"name": d["name"].split(":")[0], "tensor": d["name"]} for d in it.get_output_details()]
    native = NativeModel("tflite", "flatbuffer", str(path), entry=key, inputs=inputs, outputs=outputs)
    return LoadedModel(None, output_names=native.output_names, identity=_ident(spec, file_digest(path)),
                       framework="tflite", native=native)


@model_source("openvino")
def openvino_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    from optbench.frameworks import openvino

    ov = openvino()
    path = _path(spec, spec_dir)
    try:
        model = ov.Core().read_model(str(path))
    except Exception as e:
        raise _bad_file(spec, "an OpenVINO IR", e) from None
    inputs = []
    for port in model.inputs:
        shape = port.get_partial_shape()
        dims = [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else None
        inputs.append({"model": port.get_any_name(), "tensor": port.get_any_name(),
                       "dtype": np.dtype(port.get_element_type().to_dtype()).name, "shape": dims})
    outputs = [{"name": _port_name(p, i), "tensor": _port_name(p, i)} for i, p in enumerate(model.outputs)]
    native = NativeModel("openvino", "ir", str(path), inputs=inputs, outputs=outputs)
    digest = file_digest(path) + file_digest(path.with_suffix(".bin"))
    return LoadedModel(None, output_names=native.output_names, identity=_ident(spec, digest), framework="openvino",
                       native=native)


def _port_name(port: Any, i: int) -> str:
    try:
        return port.get_any_name()
    except RuntimeError:  # an output tensor without a name
        return f"output_{i}"


# ---------------------------------------------------------------- the spec's inputs on the model's
def bind_inputs(native: NativeModel, inputs: list) -> NativeModel:
    """The spec's inputs matched to the model's by name (or one to one), with dtypes and ranks checked: the native
    model then takes the spec's names. A mismatch is an error that names both sides."""
    model = {i["model"]: i for i in native.inputs}
    names = [i.name for i in inputs]
    if set(names) == set(model):
        pairs = [(i, model[i.name]) for i in inputs]
    elif len(inputs) == len(model) == 1:
        pairs = [(inputs[0], native.inputs[0])]
    else:
        raise SpecError(f"the model's inputs are {sorted(model)}; the spec names {names}", field="inputs",
                        expected=f"inputs named {sorted(model)}", found=repr(names))
    bound = []
    for k, (spec_input, mine) in enumerate(pairs):
        if mine["dtype"] != spec_input.dtype:
            raise SpecError(f"input '{spec_input.name}' is {mine['dtype']} in the model", field=f"inputs.{k}.dtype",
                            expected=mine["dtype"], found=spec_input.dtype)
        shape = mine.get("shape")
        if shape is not None and len(shape) != len(spec_input.shape):
            raise SpecError(f"input '{spec_input.name}' has rank {len(shape)} in the model ({shape})",
                            field=f"inputs.{k}.shape", expected=str(shape), found=str(spec_input.shape))
        for axis, (theirs, ours) in enumerate(zip(shape or [], spec_input.shape)):
            if isinstance(theirs, int) and isinstance(ours, int) and theirs != ours:
                raise SpecError(f"input '{spec_input.name}' axis {axis} is {theirs} in the model",
                                field=f"inputs.{k}.shape", expected=str(shape), found=str(spec_input.shape))
        bound.append({**mine, "name": spec_input.name})
    native.inputs = bound
    return native
