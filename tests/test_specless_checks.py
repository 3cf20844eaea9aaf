"""A model file run without a spec: sizes checked before any data is made, and errors that name what the user
wrote (the model file, --batch) rather than the spec optbench made from it."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from optbench.cli import main


def _relu(path: Path, shape: list) -> Path:
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def test_a_huge_input_is_refused_before_any_data_is_made(tmp_path, capsys):
    model = _relu(tmp_path / "huge.onnx", ["batch", 100000, 100000])
    assert main(["run", str(model), "--run-dir", str(tmp_path / "run"), "--quiet", "--precision", "fp32"]) == 2
    err = _one_line(capsys)
    assert "input 'x' [100000, 100000] is 37.25 GiB an item" in err and "more than a quarter" in err
    assert err.split(": ")[2] == str(model) and "optbench-spec-" not in err  # the file the user named
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("flags, says", [
    (["--batch", "100000000000"], "random data for"),
    (["--shapes", "batch=100000000000"], "--shapes names ['batch'], the model's batch dim, which --batch sizes"),
])
def test_a_huge_batch_is_refused_and_the_batch_is_not_a_shape(tmp_path, flags, says, capsys):
    model = _relu(tmp_path / "small.onnx", ["batch", 16])
    assert main(["run", str(model), "--run-dir", str(tmp_path / "run"), "--quiet", "--precision", "fp32",
                 *flags]) == 2
    assert says in _one_line(capsys)
