"""Malformed files a spec names: non-ONNX and truncated ONNX files, npz files with the wrong arrays."""

import numpy as np
import onnx
import pytest
import torch

from optbench.cli import main
from tests.conftest import write_spec

ONNX_SPEC = """\
name: o
model: {source: onnx, path: MODEL}
inputs: [{name: x, shape: [batch, 4]}]
data: {source: synthetic, calibration: 4, eval: 4}
backends: [onnxruntime]
"""

NPZ_SPEC = """\
name: n
model: {source: python, entrypoint: "tests/models/faulty.py:build"}
inputs: [{name: x, shape: [batch, 4]}]
data: {source: npz, path: DATA, calibration: 4, eval: 4, labels: y}
backends: [torch]
"""


@pytest.fixture
def good_onnx(tmp_path):
    path = tmp_path / "good.onnx"
    torch.onnx.export(torch.nn.Linear(4, 2), (torch.zeros(1, 4),), str(path), input_names=["x"], dynamo=False)
    onnx.checker.check_model(onnx.load(str(path)))
    return path


def _plan(capsys, spec):
    code = main(["plan", str(spec)])
    err = capsys.readouterr().err
    return code, err.strip().splitlines()


def test_good_onnx_plans(tmp_path, capsys, good_onnx):
    code, _ = _plan(capsys, write_spec(tmp_path, ONNX_SPEC.replace("MODEL", str(good_onnx))))
    assert code == 0


@pytest.mark.parametrize("kind", ["text", "truncated"])
def test_broken_onnx_files_exit_2(tmp_path, capsys, good_onnx, kind):
    bad = tmp_path / f"{kind}.onnx"
    bad.write_bytes(b"this is not a model" if kind == "text" else good_onnx.read_bytes()[:40])
    code, lines = _plan(capsys, write_spec(tmp_path, ONNX_SPEC.replace("MODEL", str(bad))))
    assert code == 2 and len(lines) == 1 and "not a valid ONNX model" in lines[0] and "model.path" in lines[0]


@pytest.mark.parametrize("arrays,fragment", [
    ({"z": np.zeros((20, 4), np.float32), "y": np.zeros(20, np.int64)}, "no array for input 'x'"),
    ({"x": np.zeros((20, 4), np.float32)}, "labels array not in the npz file"),
    ({"x": np.zeros((20, 5), np.float32), "y": np.zeros(20, np.int64)}, "shape does not match"),
    ({"x": np.zeros((20, 4), np.float32), "y": np.zeros(7, np.int64)}, "differ in their first"),
])
def test_npz_with_wrong_arrays_exit_2(tmp_path, capsys, arrays, fragment):
    data = tmp_path / "d.npz"
    np.savez(data, **arrays)
    code, lines = _plan(capsys, write_spec(tmp_path, NPZ_SPEC.replace("DATA", str(data))))
    assert code == 2 and len(lines) == 1 and fragment in lines[0], lines


def test_npz_that_is_not_an_npz(tmp_path, capsys):
    data = tmp_path / "d.npz"
    data.write_text("nope")
    code, lines = _plan(capsys, write_spec(tmp_path, NPZ_SPEC.replace("DATA", str(data))))
    assert code == 2 and "cannot read npz file" in lines[0]
