"""Model files of other frameworks, made at test time: small Keras models saved as a SavedModel, a frozen graph and a
.tflite; an OpenVINO IR; a TorchScript file and a torch.export program of the quickstart's digits CNN."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def import_tensorflow() -> None:
    """TensorFlow imported the way optbench imports it (after triton, see :func:`optbench.frameworks.tensorflow`), before
    a test imports it directly; nothing where it is not installed (the test then skips itself)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is not None:
        from optbench.frameworks import tensorflow

        tensorflow()


def keras_digits(area_resize: bool = False, seed: int = 0):
    """A small Keras CNN for 8x8x1 images (NHWC) with random weights; ``area_resize`` puts a Resizing layer with
    area interpolation in front, an op whose tf2onnx conversion computes something else."""
    import keras

    keras.utils.set_random_seed(seed)
    inp = keras.Input((8, 8, 1), name="image")
    x = keras.layers.Resizing(6, 6, interpolation="area")(inp) if area_resize else inp
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(10)(x)
    return keras.Model(inp, out)


def saved_model(model, folder: Path) -> Path:
    model.export(str(folder), verbose=False)
    return folder


def frozen_graph(model, path: Path) -> Path:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32, name="image")
    fn = tf.function(lambda image: model(image)).get_concrete_function(spec)
    path.write_bytes(convert_variables_to_constants_v2(fn).graph.as_graph_def().SerializeToString())
    return path


def tflite_file(saved: Path, path: Path) -> Path:
    import tensorflow as tf

    path.write_bytes(tf.lite.TFLiteConverter.from_saved_model(str(saved)).convert())
    return path


def two_signatures(folder: Path) -> Path:
    """A SavedModel with two signatures, neither of them serving_default."""
    import tensorflow as tf

    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def double(self, x):
            return {"y": 2 * x}

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def square(self, x):
            return {"y": x * x}

    m = Two()
    tf.saved_model.save(m, str(folder), signatures={"double": m.double, "square": m.square})
    return folder


def unconvertible(folder: Path) -> Path:
    """A SavedModel whose function uses an op tf2onnx has no handler for (RGBToHSV)."""
    import tensorflow as tf

    class Hsv(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4, 4, 3], tf.float32, name="image")])
        def __call__(self, image):
            return {"hsv": tf.image.rgb_to_hsv(tf.nn.sigmoid(image))}

    m = Hsv()
    tf.saved_model.save(m, str(folder), signatures={"serving_default": m.__call__})
    return folder


def mobilenet(folder: Path) -> Path:
    """keras.applications' MobileNetV2 at 32x32 with random weights (no download), as a SavedModel."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(32, 32, 3), weights=None, classes=10, alpha=0.35)
    return saved_model(model, folder)


def digits_module(width: int = 8):
    """The quickstart's digits CNN, untrained (seeded)."""
    import sys

    import torch

    root = Path(__file__).resolve().parents[2] / "experiments" / "models"
    sys.path.insert(0, str(root))
    try:
        from digits import DigitsCNN
    finally:
        sys.path.remove(str(root))
    torch.manual_seed(0)
    return DigitsCNN(width).eval()


def torchscript_file(path: Path) -> Path:
    import torch

    torch.jit.trace(digits_module(), torch.randn(2, 1, 8, 8)).save(str(path))
    return path


def exported_file(path: Path) -> Path:
    import torch

    batch = torch.export.Dim("batch", min=1, max=1024)
    program = torch.export.export(digits_module(), (torch.randn(2, 1, 8, 8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(path))
    return path


def openvino_ir(path: Path) -> Path:
    """The digits CNN as an OpenVINO IR (through its ONNX export; OpenVINO writes the .xml and .bin)."""
    import openvino as ov
    import torch

    onnx = path.with_suffix(".onnx")
    torch.onnx.export(digits_module(), (torch.randn(2, 1, 8, 8),), str(onnx), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    ov.save_model(ov.convert_model(str(onnx)), str(path))
    onnx.unlink()
    return path


def sample(shape: tuple[int, ...]) -> np.ndarray:
    return np.random.default_rng(0).random(shape, dtype=np.float32)


def two_outputs_tflite(path: Path, reorder: bool = True, signatures: bool = True, batch: int | None = None) -> Path:
    """A .tflite with two outputs of one shape, ``double`` (2x) and ``negated`` (-x); ``reorder`` reverses the
    subgraph's output list (as some shipped files are laid out), so it no longer follows the signature's keys;
    without ``signatures`` the file names its tensors only (``PartitionedCall:0``, ``PartitionedCall:1``); ``batch``
    fixes the batch dim."""
    import tensorflow as tf
    from tensorflow.lite.tools import flatbuffer_utils

    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([batch, 4], tf.float32, name="x")])
        def __call__(self, x):
            return {"double": 2.0 * x, "negated": -x}

    m = Two()
    fn = m.__call__.get_concrete_function()
    path.write_bytes(tf.lite.TFLiteConverter.from_concrete_functions([fn], m).convert())
    if reorder or not signatures:
        model = flatbuffer_utils.read_model(str(path))
        if reorder:
            model.subgraphs[0].outputs = model.subgraphs[0].outputs[::-1]
        if not signatures:
            model.signatureDefs = []
        flatbuffer_utils.write_model(model, str(path))
    return path


def split_frozen_graph(path: Path, terminal_split: bool = False) -> Path:
    """A frozen graph whose outputs are one node's three: ``parts:0``, ``parts:1``, ``parts:2`` (a tf.split of a
    matmul with a frozen variable). ``terminal_split``: the function's Identity outputs left out, so the split node
    itself ends the graph."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    w = tf.Variable(np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
    def parts(x):
        return tf.split(tf.matmul(x, w), 3, axis=1, name="parts")

    graph = convert_variables_to_constants_v2(parts.get_concrete_function()).graph.as_graph_def()
    if terminal_split:
        keep = [n for n in graph.node if not (n.op == "Identity" and n.input and n.input[0].startswith("parts"))]
        del graph.node[:]
        graph.node.extend(keep)
    path.write_bytes(graph.SerializeToString())
    return path


def digits_onnx(path: Path) -> Path:
    """The digits CNN as an ONNX file with a dynamic batch."""
    import torch

    torch.onnx.export(digits_module(), (torch.randn(2, 1, 8, 8),), str(path), input_names=["image"],
                      output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      opset_version=17, dynamo=False)
    return path
