"""The frameworks a model may arrive in, imported quietly (TensorFlow's start-up logs go nowhere) and with one clear
error when missing: which extra installs it."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from optbench.errors import SpecError


def tensorflow() -> Any:
    """TensorFlow, its C++ and Python logs at errors only. Where triton is installed it is imported first: triton
    imported into a process that has loaded TensorFlow crashes it (a segmentation fault, TensorFlow 2.21 beside
    torch's triton), and torch.export and torch.compile import triton."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" not in sys.modules and importlib.util.find_spec("triton") is not None:
        import triton  # noqa: F401
    try:
        import tensorflow as tf
    except ImportError as e:
        raise SpecError(f"TensorFlow cannot be imported (install the 'tensorflow' extra): {e}") from None
    tf.get_logger().setLevel("ERROR")
    return tf


def tf2onnx() -> Any:
    tensorflow()
    try:
        import tf2onnx as converter
    except ImportError as e:
        raise SpecError(f"tf2onnx cannot be imported (install the 'tensorflow' extra): {e}") from None
    import logging

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    return converter


def tflite_interpreter() -> tuple[Any, str]:
    """The LiteRT interpreter class and what it is: ``ai_edge_litert``'s, or else the same interpreter as
    TensorFlow ships it (``tf.lite``, deprecated there in favour of LiteRT)."""
    try:
        from ai_edge_litert.interpreter import Interpreter

        return Interpreter, _version("ai-edge-litert", "ai_edge_litert")
    except ImportError:
        pass
    try:
        tf = tensorflow()
    except SpecError:
        raise SpecError("no TFLite interpreter: neither ai_edge_litert nor tensorflow can be imported (install the "
                        "'litert' or the 'tensorflow' extra)") from None
    import warnings

    warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
    return tf.lite.Interpreter, f"tensorflow {tf.__version__} (tf.lite)"


def openvino() -> Any:
    try:
        import openvino as ov
    except ImportError as e:
        raise SpecError(f"OpenVINO cannot be imported (install the 'openvino' extra): {e}") from None
    return ov


def _version(dist: str, module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"{module} {version(dist)}"
    except PackageNotFoundError:
        return module
