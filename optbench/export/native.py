"""A framework's model file → ONNX: TensorFlow SavedModels (from the signature, not through Keras) and frozen graphs,
and TFLite flatbuffers, by tf2onnx. The ONNX graph takes the spec's input names and the model's output names, so
every backend feeds and reads it as it does any ONNX file. An op tf2onnx leaves unconverted is an error naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optbench.errors import SpecError
from optbench.models.base import NativeModel


def native_to_onnx(native: NativeModel, path: Path, opset: int) -> dict[str, Any]:
    """Convert ``native`` to ONNX at ``path``; returns the conversion step for the row (step, tool, version, opset)."""
    from optbench.frameworks import tf2onnx

    converter = tf2onnx()
    if native.form == "saved_model":
        proto, origin = _saved_model(converter, native, opset)
    elif native.form == "frozen_graph":
        proto, origin = _frozen_graph(converter, native, opset)
    elif native.form == "flatbuffer":
        proto, origin = _tflite(converter, native, opset)
    else:
        raise SpecError(f"no ONNX conversion of a {native.describe()}", field="model.source")
    unconverted(proto, native.framework)
    _rename(proto, native)
    import onnx

    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return {"step": f"{native.framework} → onnx", "tool": "tf2onnx", "version": converter.__version__,
            "opset": opset, "from": origin}


def _saved_model(converter, native: NativeModel, opset: int):
    from tf2onnx import tf_loader

    from optbench.models.saved_model import V1

    if native.loader == V1:
        return _saved_model_v1(converter, native, opset)

    def load():
        return tf_loader.from_saved_model(native.path, None, None, tag=native.tag, signatures=[native.entry],
                                          return_tensors_to_rename=True)

    graph, inputs, outputs, renames = _converting(load)
    # the graph's tensors → the signature's keys (tf2onnx's renames), then the signature's input keys → the spec's
    spec_name = {i["model"]: i["name"] for i in native.inputs}
    renames = {t: spec_name.get(n, n) for t, n in renames.items()}
    proto = _converting(lambda: converter.convert.from_graph_def(graph, input_names=inputs, output_names=outputs,
                                                                 opset=opset, tensors_to_rename=renames)[0])
    return proto, native.describe()


def _saved_model_v1(converter, native: NativeModel, opset: int):
    """A SavedModel that only TensorFlow's v1 loader opens (tf2onnx's SavedModel path uses the object loader):
    its signature's graph frozen in the loader's session, then converted as a frozen graph."""
    from optbench.models.saved_model import open_saved_model

    tf = converter.tf_loader.tf
    opened = open_saved_model(native.path, native.tag, native.loader)
    try:
        outputs = [t for t, _ in opened.signature(native.entry).outputs.values()]
        session = opened.session
        graph = _converting(lambda: tf.compat.v1.graph_util.convert_variables_to_constants(
            session, session.graph.as_graph_def(), sorted({t.rsplit(":", 1)[0] for t in outputs})))
    finally:
        opened.close()
    renames = {i["tensor"]: i["name"] for i in native.inputs} | {o["tensor"]: o["name"] for o in native.outputs}
    proto = _converting(lambda: converter.convert.from_graph_def(
        graph, input_names=[i["tensor"] for i in native.inputs], output_names=[o["tensor"] for o in native.outputs],
        opset=opset, tensors_to_rename=renames)[0])
    return proto, native.describe()


def _frozen_graph(converter, native: NativeModel, opset: int):
    tf = converter.tf_loader.tf
    graph = tf.compat.v1.GraphDef()
    graph.ParseFromString(Path(native.path).read_bytes())
    _defaults_as_identity(graph, {i["tensor"].split(":")[0] for i in native.inputs})
    renames = {i["tensor"]: i["name"] for i in native.inputs} | {o["tensor"]: o["name"] for o in native.outputs}
    proto = _converting(lambda: converter.convert.from_graph_def(
        graph, input_names=[i["tensor"] for i in native.inputs], output_names=[o["tensor"] for o in native.outputs],
        opset=opset, tensors_to_rename=renames)[0])
    return proto, "frozen graph"


def _defaults_as_identity(graph, fed: set[str]) -> None:
    """A PlaceholderWithDefault the spec does not feed computes its default input, as TensorFlow runs it (a graph
    retrained by TensorFlow's retrain.py holds one between the image features and the new layer): it becomes an
    Identity of that input, which tf2onnx converts (it refuses the placeholder whose default is not a constant)."""
    for node in graph.node:
        if node.op == "PlaceholderWithDefault" and node.name not in fed:
            dtype = node.attr["dtype"].type
            node.op = "Identity"
            for key in ("dtype", "shape"):
                del node.attr[key]
            node.attr["T"].type = dtype


def _tflite(converter, native: NativeModel, opset: int):
    proto = _converting(lambda: converter.convert.from_tflite(native.path, opset=opset)[0])
    return proto, native.describe()


def _converting(fn):
    """tf2onnx's own failures (a handler that raises on an op) as one line naming what it says."""
    try:
        return fn()
    except SpecError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0][:240]
        raise SpecError(f"tf2onnx cannot convert the model: {e.__class__.__name__}: {first}",
                        field="model.path") from None


def unconverted(proto, framework: str) -> None:
    """Nodes tf2onnx left as the framework's op (no ONNX operator of that name): the model cannot run as ONNX."""
    import onnx

    left: dict[str, str] = {}
    for node in _nodes(proto.graph):
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type, node.domain):
            left.setdefault(node.op_type, node.name)
    if left:
        ops = ", ".join(f"'{op}' (node {name})" for op, name in left.items())
        raise SpecError(f"tf2onnx cannot convert {framework} op{'s' if len(left) > 1 else ''} {ops}: no ONNX "
                        f"operator computes {'them' if len(left) > 1 else 'it'}", field="model.path")


def _nodes(graph):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _nodes(sub)


def _rename(proto, native: NativeModel) -> None:
    """Graph inputs and outputs under the spec's and the model's names, in the model's order (tflite files keep
    their tensor names through tf2onnx; SavedModels and graphs were renamed on the way)."""
    names = {i["tensor"]: i["name"] for i in native.inputs} | {o["tensor"]: o["name"] for o in native.outputs}
    rename = {v.name: names[v.name] for v in list(proto.graph.input) + list(proto.graph.output) if v.name in names}
    if not rename:
        return
    for v in list(proto.graph.input) + list(proto.graph.output):
        v.name = rename.get(v.name, v.name)
    for node in _nodes(proto.graph):
        node.input[:] = [rename.get(x, x) for x in node.input]
        node.output[:] = [rename.get(x, x) for x in node.output]
