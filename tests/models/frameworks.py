"""Model files of other frameworks, made at test time: small Keras models saved as a SavedModel, a frozen graph and a
.tflite; an OpenVINO IR; a TorchScript file and a torch.export program of the quickstart's digits CNN."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


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
