"""Models that optbench must read without guessing: time-major outputs, fixed batches, class ids."""

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper


class TimeMajorCRNN(torch.nn.Module):
    """A tiny CRNN whose logits come out time-major (T, B, C), as many CTC recognisers export them."""

    def __init__(self, classes: int = 11) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.rnn = torch.nn.LSTM(8 * 4, 16, bidirectional=True)
        self.head = torch.nn.Linear(32, classes)

    def forward(self, x):  # x (B, 1, 4, T)
        f = torch.relu(self.conv(x))                 # (B, 8, 4, T)
        f = f.flatten(1, 2).permute(2, 0, 1)         # (T, B, 32)
        h, _ = self.rnn(f)
        return self.head(h).softmax(-1)              # (T, B, C)


def build_crnn(seed: int = 0):
    torch.manual_seed(seed)
    return TimeMajorCRNN().eval()


def strips(count: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(0, 1, (count, 1, 4, 12)).astype(np.float32)}


def time_major_static(path: Path, declared: list | None = None) -> Path:
    """x [1, 4, T] -> y (T, 1, 5) (a time-major output at a static batch of 1); the graph declares ``declared``
    for y (the wrong [1, 'seqlen'] by default, as one OCR package's export does)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 1, (4, 5)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[2, 0, 1]),  # (T, 1, 4)
        helper.make_node("MatMul", ["xt", "w"], ["y"]),
    ]
    out_dims = declared if declared is not None else [1, "seqlen"]
    graph = helper.make_graph(nodes, "time_major", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, "t"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_dims)], [w])
    return _save(graph, path)


def fixed_batch(path: Path, batch: int = 1) -> Path:
    """x [batch fixed, 6] -> y [batch, 3] (a linear layer with a static batch)."""
    rng = np.random.default_rng(1)
    w = numpy_helper.from_array(rng.normal(0, 1, (6, 3)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "fixed",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 3])], [w])
    return _save(graph, path)


def argmax_ids(path: Path) -> Path:
    """x [n, 6, 4] -> logits [n, 6, 4] and ids = ArgMax(logits) int64 [n, 6]: a recogniser that decodes in-graph."""
    rng = np.random.default_rng(2)
    w = numpy_helper.from_array(rng.normal(0, 1, (4, 4)).astype(np.float32), "w")
    nodes = [helper.make_node("MatMul", ["x", "w"], ["logits"]),
             helper.make_node("ArgMax", ["logits"], ["ids"], axis=2, keepdims=0)]
    graph = helper.make_graph(nodes, "ids", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 6, 4])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 6, 4]),
                               helper.make_tensor_value_info("ids", TensorProto.INT64, ["n", 6])], [w])
    return _save(graph, path)


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def seq(count: int, seed: int = 0, t: int = 12) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(0, 1, (count, 4, t)).astype(np.float32)}


def rows6(count: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(0, 1, (count, 6)).astype(np.float32)}


def grid(count: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(0, 1, (count, 6, 4)).astype(np.float32)}
