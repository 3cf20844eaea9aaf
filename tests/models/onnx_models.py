"""Small ONNX graphs built by hand, shaped like third-party exports (paddle2onnx, stateful audio models)."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _const(name: str, value: np.ndarray):
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value.astype(np.float32), name))


def paddle_like(path: Path, opset: int = 12) -> Path:
    """Conv weights and BatchNorm statistics as Constant nodes (as paddle2onnx writes them), a BatchNorm variance
    beyond fp16's range, opset 12, and two outputs: a feature map and pooled features."""
    rng = np.random.default_rng(0)
    w = rng.normal(0, 0.3, (8, 3, 3, 3))
    var = np.full(8, 1.0)
    var[0] = 9.79e7  # like PP-OCR det's batch_norm_0.w_2
    scale = np.ones(8)
    scale[0] = np.sqrt(9.79e7)  # keeps channel 0's output in a normal range
    nodes = [
        _const("conv.w", w), _const("bn.scale", scale), _const("bn.bias", np.zeros(8)),
        _const("bn.mean", np.zeros(8)), _const("bn.var", var),
        helper.make_node("Conv", ["x", "conv.w"], ["c"], name="conv"),
        helper.make_node("BatchNormalization", ["c", "bn.scale", "bn.bias", "bn.mean", "bn.var"], ["b"], name="bn"),
        helper.make_node("Relu", ["b"], ["feat"], name="relu"),
        helper.make_node("GlobalAveragePool", ["feat"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["pooled"], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "paddle_like",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 8])],
        [helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["n", 8, 6, 6]),
         helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["n", 8])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def stateful(path: Path) -> Path:
    """x [batch, 4], state [2, batch, 3] and a scalar k: y = x * k, stateN = tanh(state + mean(x))."""
    nodes = [
        helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["x", "kf"], ["y"]),
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0),
        helper.make_node("Unsqueeze", ["m", "axes"], ["m2"]),
        helper.make_node("Add", ["state", "m2"], ["s"]),
        helper.make_node("Tanh", ["s"], ["stateN"]),
    ]
    graph = helper.make_graph(
        nodes, "stateful",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("state", TensorProto.FLOAT, [2, "batch", 3]),
         helper.make_tensor_value_info("k", TensorProto.INT64, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4]),
         helper.make_tensor_value_info("stateN", TensorProto.FLOAT, [2, "batch", 3])],
        initializer=[numpy_helper.from_array(np.array([0, 2], np.int64), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def width_bound(path: Path, width: int = 8) -> Path:
    """y = x @ W with W (width, 2): only inputs of exactly ``width`` columns run."""
    w = np.random.default_rng(0).normal(size=(width, 2)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "width_bound",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
