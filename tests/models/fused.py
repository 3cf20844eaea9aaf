"""Small ONNX graphs whose activations ONNX Runtime folds: a 4-class CNN (Conv+Relu, Conv+Relu, MaxPool,
Gemm+Relu, Gemm) and an MLP of MatMul+Add+Relu layers, named as torch exports them, alone or side by side in one
graph; ``damage`` puts noise of their own size on one layer's weights, everything else identical."""

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CNN_CONVS = ["/features/features.0/Conv", "/features/features.2/Conv"]


def _weights(rng, shape, fan_in, damaged: bool) -> np.ndarray:
    w = (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)
    if damaged:
        w = w + np.random.default_rng(99).standard_normal(shape).astype(np.float32) * np.abs(w).mean()
    return w


def _save(nodes, inits, name: str, inputs: dict[str, list], outputs: dict[str, int], path: Path) -> Path:
    graph = helper.make_graph(nodes, name, [helper.make_tensor_value_info(k, TensorProto.FLOAT, v) for k, v in inputs.items()],
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, ["batch", c]) for k, c in outputs.items()],
                              inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return Path(path)


def cnn(path: Path, damage: str | None = None, seed: int = 0) -> Path:
    """x [batch, 1, 8, 8] → logits [batch, 4]; ``damage``: a node name (one of CNN_CONVS or the head's Gemms)."""
    nodes, inits = _cnn(damage, seed, "x", "logits")
    return _save(nodes, inits, "cnn", {"x": ["batch", 1, 8, 8]}, {"logits": 4}, path)


def _cnn(damage: str | None, seed: int, x: str, logits: str) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    nodes, inits, c_in = [], [], 1
    for k, name in enumerate(CNN_CONVS):
        scope = name.rsplit("/", 1)[0]
        w = _weights(rng, (8, c_in, 3, 3), 9 * c_in, damage == name)
        inits += [numpy_helper.from_array(w, f"{scope}.weight"),
                  numpy_helper.from_array((rng.standard_normal(8) * 0.1).astype(np.float32), f"{scope}.bias")]
        nodes.append(helper.make_node("Conv", [x, f"{scope}.weight", f"{scope}.bias"], [f"{scope}/Conv_output_0"],
                                      name=name, pads=[1, 1, 1, 1]))
        relu = f"/features/features.{2 * k + 1}/Relu"
        nodes.append(helper.make_node("Relu", [f"{scope}/Conv_output_0"], [f"{relu}_output_0"], name=relu))
        x, c_in = f"{relu}_output_0", 8
    nodes.append(helper.make_node("MaxPool", [x], ["/features/features.4/MaxPool_output_0"],
                                  name="/features/features.4/MaxPool", kernel_shape=[2, 2], strides=[2, 2]))
    nodes.append(helper.make_node("Flatten", ["/features/features.4/MaxPool_output_0"], ["/head/head.0/Flatten_output_0"],
                                  name="/head/head.0/Flatten"))
    x = "/head/head.0/Flatten_output_0"
    for k, (n_in, n_out) in enumerate([(128, 16), (16, 4)]):
        name = f"/head/head.{2 * k + 1}/Gemm"
        w = _weights(rng, (n_out, n_in), n_in, damage == name)
        inits += [numpy_helper.from_array(w, f"head.{2 * k + 1}.weight"),
                  numpy_helper.from_array((rng.standard_normal(n_out) * 0.1).astype(np.float32),
                                          f"head.{2 * k + 1}.bias")]
        out = logits if k == 1 else f"{name}_output_0"
        nodes.append(helper.make_node("Gemm", [x, f"head.{2 * k + 1}.weight", f"head.{2 * k + 1}.bias"], [out],
                                      name=name, transB=1))
        x = out
        if k == 0:
            nodes.append(helper.make_node("Relu", [x], ["/head/head.2/Relu_output_0"], name="/head/head.2/Relu"))
            x = "/head/head.2/Relu_output_0"
    return nodes, inits


def mlp(path: Path, damage: int | None = None, seed: int = 0, widths=(16, 32, 32, 4)) -> Path:
    """x [batch, 16] → logits [batch, 4] through MatMul+Add+Relu layers (the last without Relu); ``damage``:
    that layer's MatMul weights get noise."""
    nodes, inits = _mlp(damage, seed, widths, "x", "logits")
    return _save(nodes, inits, "mlp", {"x": ["batch", widths[0]]}, {"logits": widths[-1]}, path)


def _mlp(damage: int | None, seed: int, widths, x: str, logits: str) -> tuple[list, list]:
    rng = np.random.default_rng(seed)
    nodes, inits = [], []
    for k in range(len(widths) - 1):
        scope = f"/layers/layers.{2 * k}"
        w = _weights(rng, (widths[k], widths[k + 1]), widths[k], damage == k)
        inits += [numpy_helper.from_array(w, f"layers.{2 * k}.weight"),
                  numpy_helper.from_array((rng.standard_normal(widths[k + 1]) * 0.1).astype(np.float32),
                                          f"layers.{2 * k}.bias")]
        last = k == len(widths) - 2
        nodes.append(helper.make_node("MatMul", [x, f"layers.{2 * k}.weight"], [f"{scope}/MatMul_output_0"],
                                      name=f"{scope}/MatMul"))
        nodes.append(helper.make_node("Add", [f"{scope}/MatMul_output_0", f"layers.{2 * k}.bias"],
                                      [logits if last else f"{scope}/Add_output_0"], name=f"{scope}/Add"))
        x = f"{scope}/Add_output_0"
        if not last:
            act = f"/layers/layers.{2 * k + 1}/Relu"
            nodes.append(helper.make_node("Relu", [x], [f"{act}_output_0"], name=act))
            x = f"{act}_output_0"
    return nodes, inits


def pair(path: Path, seed: int = 0) -> Path:
    """The CNN and the MLP side by side in one graph: image [batch, 1, 8, 8] → logits [batch, 4], and
    x [batch, 16] → scores [batch, 4] (one run judges both)."""
    c_nodes, c_inits = _cnn(None, seed, "image", "logits")
    m_nodes, m_inits = _mlp(None, seed, (16, 32, 32, 4), "x", "scores")
    return _save(c_nodes + m_nodes, c_inits + m_inits, "pair", {"image": ["batch", 1, 8, 8], "x": ["batch", 16]},
                 {"logits": 4, "scores": 4}, path)


def qdq(src: Path, dst: Path, batches: list[dict[str, np.ndarray]], op_types: list[str] | None = None) -> Path:
    """``src`` quantized as optbench's int8 variants are: ORT's pre-processing, then static QDQ (minmax,
    per-channel S8 weights, U8 activations), calibrated on ``batches``."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    pre = Path(dst).with_suffix(".pre.onnx")
    quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # ONNX's shape inference: enough here

    class Reader:
        def __init__(self):
            self.it = iter(batches)

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, op_types_to_quantize=op_types,
                    extra_options={"CalibMovingAverage": False})
    return Path(dst)


def steps(path: Path, seed: int = 0) -> Path:
    """x [batch, 2, 16] → a MatMul+Add over each of the two steps → Gather of the second step → MatMul+Add →
    logits [batch, 4]: the Gather only selects values of the tensor before it (fed a first step far larger than the
    second, a quantization range set by the first leaves the second a large relative error)."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(_weights(rng, (16, 16), 16, False), "enc.weight"),
             numpy_helper.from_array((rng.standard_normal(16) * 0.1).astype(np.float32), "enc.bias"),
             numpy_helper.from_array(np.array(1, dtype=np.int64), "step"),
             numpy_helper.from_array(_weights(rng, (16, 4), 16, False), "head.weight"),
             numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(np.float32), "head.bias")]
    nodes = [helper.make_node("MatMul", ["x", "enc.weight"], ["/enc/MatMul_output_0"], name="/enc/MatMul"),
             helper.make_node("Add", ["/enc/MatMul_output_0", "enc.bias"], ["/enc/Add_output_0"], name="/enc/Add"),
             helper.make_node("Gather", ["/enc/Add_output_0", "step"], ["/Gather_output_0"], name="/Gather", axis=1),
             helper.make_node("MatMul", ["/Gather_output_0", "head.weight"], ["/head/MatMul_output_0"],
                              name="/head/MatMul"),
             helper.make_node("Add", ["/head/MatMul_output_0", "head.bias"], ["logits"], name="/head/Add")]
    return _save(nodes, inits, "steps", {"x": ["batch", 2, 16]}, {"logits": 4}, path)


def scores(path: Path, seed: int = 0, shift: float = 8.0) -> Path:
    """x [batch, 16] → /enc MatMul+Add → /head MatMul+Add → /head Sub ``shift`` → /head Sigmoid → probs [batch, 4]:
    a Sigmoid of logits far below zero turns a small relative error of its logits into a large one of its
    probabilities."""
    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array(_weights(rng, (16, 16), 16, False), "enc.weight"),
             numpy_helper.from_array((rng.standard_normal(16) * 0.1).astype(np.float32), "enc.bias"),
             numpy_helper.from_array(_weights(rng, (16, 4), 16, False), "head.weight"),
             numpy_helper.from_array((rng.standard_normal(4) * 0.1).astype(np.float32), "head.bias"),
             numpy_helper.from_array(np.float32(shift), "head.shift")]
    nodes = [helper.make_node("MatMul", ["x", "enc.weight"], ["/enc/MatMul_output_0"], name="/enc/MatMul"),
             helper.make_node("Add", ["/enc/MatMul_output_0", "enc.bias"], ["/enc/Add_output_0"], name="/enc/Add"),
             helper.make_node("MatMul", ["/enc/Add_output_0", "head.weight"], ["/head/MatMul_output_0"],
                              name="/head/MatMul"),
             helper.make_node("Add", ["/head/MatMul_output_0", "head.bias"], ["/head/Add_output_0"], name="/head/Add"),
             helper.make_node("Sub", ["/head/Add_output_0", "head.shift"], ["/head/Sub_output_0"], name="/head/Sub"),
             helper.make_node("Sigmoid", ["/head/Sub_output_0"], ["probs"], name="/head/Sigmoid")]
    return _save(nodes, inits, "scores", {"x": ["batch", 16]}, {"probs": 4}, path)
