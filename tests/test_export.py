"""Export and ONNX precision conversion on tiny models."""

import numpy as np
import onnx
import onnxruntime as ort
import torch

from optbench.export.onnx import dynamic_axes, export_onnx
from optbench.export.precision import convert_fp16
from optbench.spec.models import ExportSettings, InputSpec


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(16, 8)
        self.norm = torch.nn.LayerNorm(8)

    def forward(self, x):
        return torch.softmax(self.norm(self.fc(x)), -1)


def test_export_dynamic_axes_and_fp16_keeps_io_and_fragile_ops(tmp_path):
    torch.manual_seed(0)
    inputs = [InputSpec(name="x", shape=["batch", "seq", 16])]
    assert dynamic_axes(inputs, ["out"], {"out": 0}) == {"x": {0: "batch", 1: "seq"}, "out": {0: "batch"}}
    assert dynamic_axes(inputs, ["out"], {"out": 1})["out"] == {1: "batch"}  # a time-major output, as read
    x = np.random.default_rng(0).standard_normal((2, 5, 16)).astype(np.float32)
    info = export_onnx(Tiny().eval(), inputs, {"x": x}, tmp_path / "m.onnx", ExportSettings(opset=17, simplify=True), ["out"])
    assert info["simplified"] is True
    dims = onnx.load(str(tmp_path / "m.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims[:2]] == ["batch", "seq"]
    facts = convert_fp16(tmp_path / "m.onnx", tmp_path / "h.onnx")
    assert "Softmax" in facts["fp32_ops_kept"]
    sess = ort.InferenceSession(str(tmp_path / "h.onnx"), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(float)"  # I/O stays fp32
    other = np.random.default_rng(1).standard_normal((3, 7, 16)).astype(np.float32)
    out = sess.run(None, {"x": other})[0]
    ref = Tiny().eval()
    torch.manual_seed(0)
    ref = Tiny().eval()
    with torch.no_grad():
        want = ref(torch.from_numpy(other)).numpy()
    assert out.shape == (3, 7, 8)
    assert np.linalg.norm(out - want) / np.linalg.norm(want) < 1e-2
