"""Model sources that arrive as files of a framework: TorchScript, torch.export programs, TensorFlow SavedModels and
frozen graphs, TFLite flatbuffers, OpenVINO IR. Each is loaded by its own framework, and what the spec must choose
(a signature among several, a frozen graph's outputs) is an error naming the field, never a guess."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optbench.digest import file_digest, tree_digest
from optbench.errors import SpecError
from optbench.models.base import LoadedModel, NativeModel, model_source
from optbench.models.sources import _ident
from optbench.paths import resolve_model_file


def _path(spec, spec_dir: Path) -> Path:
    """The spec's file (or SavedModel folder), ``package:NAME/path`` included."""
    return resolve_model_file(spec.path, spec_dir / "spec.yaml", folder=spec.source == "tensorflow")


def _bad_file(spec, what: str, e: Exception) -> SpecError:
    lines = [x.strip() for x in str(e).splitlines() if x.strip()] or [e.__class__.__name__]
    # a first line that only says where it was thrown ("Exception from src/...:84:", OpenVINO): the last says why
    first = (lines[-1] if lines[0].endswith(":") else lines[0])[:200]
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
    from optbench.models.trust import load_exported
    from optbench.models.wrappers import ExportedModule

    path = _path(spec, spec_dir)
    try:
        program = load_exported(path, spec.trust)
    except SpecError:
        raise
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
    from optbench.models.saved_model import SavedModelError, open_saved_model

    try:
        opened = open_saved_model(str(path), spec.tag)
    except SavedModelError as e:
        raise SpecError(f"TensorFlow cannot load the SavedModel (tag '{spec.tag}'): {e}", field="model.path",
                        found=repr(spec.path)) from None
    try:
        key = choose_signature(opened.keys, spec.signature, "SavedModel")
        sig = opened.signature(key)
    finally:
        opened.close()
    if not sig.inputs:
        raise SpecError(f"signature '{key}' takes no named inputs", field="model.signature", found=repr(key))
    inputs = [{"model": k, "tensor": tensor, "dtype": dtype, "shape": dims}
              for k, (tensor, dtype, dims) in sig.inputs.items()]
    outputs = [{"name": k, "tensor": tensor, "shape": dims} for k, (tensor, dims) in sig.outputs.items()]
    return NativeModel("tensorflow", "saved_model", str(path), entry=key, tag=spec.tag, inputs=inputs,
                       outputs=outputs, loader=opened.loader)


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
    ops = _imported(spec, graph, tf)
    inputs = [{"model": n.name, "tensor": f"{n.name}:0", "dtype": tf.dtypes.as_dtype(n.attr["dtype"].type).name,
               "shape": _proto_shape(n.attr["shape"].shape) if "shape" in n.attr else None} for n in holders]
    tensors = [_output_tensor(o, ops) for o in spec.outputs] if spec.outputs else \
        [t.name for node in _terminal_nodes(graph) for t in ops[node].outputs]
    outputs = []
    for name in tensors:
        shape = ops[name.rsplit(":", 1)[0]].outputs[int(name.rsplit(":", 1)[1])].shape
        outputs.append({"name": name, "tensor": name, "shape": None if shape.rank is None else shape.as_list()})
    return NativeModel("tensorflow", "frozen_graph", str(path), inputs=inputs, outputs=outputs)


def _imported(spec, graph, tf) -> dict:
    """The graph's operations by name (TensorFlow knows how many outputs each op has; the GraphDef does not)."""
    with tf.Graph().as_default() as g:
        try:
            tf.compat.v1.import_graph_def(graph, name="")
        except Exception as e:
            raise _bad_file(spec, "a GraphDef TensorFlow can import", e) from None
    return {op.name: op for op in g.get_operations()}


def _output_tensor(name: str, ops: dict) -> str:
    """A spec's output as TensorFlow writes the tensor: 'node:N' ('node' alone is 'node:0')."""
    node, sep, index = name.rpartition(":")
    if not sep or not index.isdigit():
        node, index = name, "0"
    if node not in ops:
        raise SpecError(f"the frozen graph has no node '{node}'", field="model.outputs", found=repr(name))
    count = len(ops[node].outputs)
    if int(index) >= count:
        raise SpecError(f"node '{node}' has {count} output(s) ({node}:0 .. {node}:{count - 1})",
                        field="model.outputs", found=repr(name))
    return f"{node}:{index}"


def _proto_shape(shape) -> list | None:
    if shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in shape.dim]


def _terminal_nodes(graph) -> list[str]:
    """The graph's one node whose outputs nothing consumes (bookkeeping nodes aside); several: the spec names the
    output tensors. Every output of that node is an output of the model."""
    used = {i.lstrip("^").split(":")[0] for n in graph.node for i in n.input}
    ends = [n.name for n in graph.node if n.name not in used and n.op not in ("Const", "NoOp", "Placeholder",
                                                                               "Assert", "SaveV2", "RestoreV2")]
    if len(ends) != 1:
        raise SpecError(f"the frozen graph ends in {len(ends)} nodes {ends[:6]}; name its outputs",
                        field="model.outputs", expected="the output tensors, e.g. [Identity:0]", found="none")
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
        inputs = [{"model": k, "tensor": d["name"], "dtype": np.dtype(d["dtype"]).name, "shape": _tflite_dims(d)}
                  for k, d in ins.items()]
        outs = runner.get_output_details()
        outputs = [{"name": k, "tensor": d["name"], "shape": _tflite_dims(d)} for k, d in outs.items()]
    else:
        if spec.signature:
            raise SpecError("the TFLite file has no signatures", field="model.signature", found=repr(spec.signature))
        key = None  # tensors by the names the file gives them, 'node:N' and all: one node's outputs stay distinct
        inputs = [{"model": d["name"], "tensor": d["name"], "dtype": np.dtype(d["dtype"]).name,
                   "shape": _tflite_dims(d)} for d in it.get_input_details()]
        outputs = [{"name": d["name"], "tensor": d["name"], "shape": _tflite_dims(d)} for d in it.get_output_details()]
    native = NativeModel("tflite", "flatbuffer", str(path), entry=key, inputs=inputs, outputs=outputs)
    return LoadedModel(None, output_names=native.output_names, identity=_ident(spec, file_digest(path)),
                       framework="tflite", native=native)


def _tflite_dims(detail: dict) -> list:
    return [int(x) if x > 0 else None for x in detail["shape_signature"]]


@model_source("openvino")
def openvino_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    from optbench.frameworks import openvino

    ov = openvino()
    path = _path(spec, spec_dir)
    try:
        model = ov.Core().read_model(str(path))
    except Exception as e:
        raise _bad_file(spec, "an OpenVINO IR", e) from None
    inputs = [{"model": port.get_any_name(), "tensor": port.get_any_name(),
               "dtype": np.dtype(port.get_element_type().to_dtype()).name, "shape": _port_dims(port)}
              for port in model.inputs]
    outputs = [{"name": _port_name(p, i), "tensor": _port_name(p, i), "shape": _port_dims(p)}
               for i, p in enumerate(model.outputs)]
    native = NativeModel("openvino", "ir", str(path), inputs=inputs, outputs=outputs)
    digest = file_digest(path) + file_digest(path.with_suffix(".bin"))
    return LoadedModel(None, output_names=native.output_names, identity=_ident(spec, digest), framework="openvino",
                       native=native)


def _port_dims(port: Any) -> list | None:
    shape = port.get_partial_shape()
    return [d.get_length() if d.is_static else None for d in shape] if shape.rank.is_static else None


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
    # TensorFlow's convention: a node's name alone stands for its first output ('x' is 'x:0')
    alias = {n.removesuffix(":0"): n for n in model if n.endswith(":0") and n.removesuffix(":0") not in model}
    if set(names) == set(model) or {alias.get(n, n) for n in names} == set(model):
        pairs = [(i, model[alias.get(i.name, i.name)]) for i in inputs]
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
