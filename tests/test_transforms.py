"""Transforms on the small run (tiny digits CNN): int8, structured pruning, distillation; and unit checks."""

import copy

import numpy as np
import pytest
import torch

import optbench
from optbench.transforms import count_params
from tests.conftest import write_spec


def _rows(run):
    df = optbench.load_results(run)
    return df[df.status == "ok"].set_index(["backend", "precision", "transform", "batch_size"])


def test_every_planned_variant_is_ok(small_run):
    df = optbench.load_results(small_run)
    bad = df[~df.status.isin(["ok", "skipped"])]
    assert bad.empty, bad[["variant_id", "error"]].to_string()
    assert (df[df.status == "ok"].task_accuracy > 0.8).all()


def test_int8_is_static_qdq_and_smaller(small_run):
    r = _rows(small_run)
    fp32 = r.loc[("onnxruntime", "fp32", "none", 16)]
    int8 = r.loc[("onnxruntime", "int8", "none", 16)]
    assert int8.model_bytes < 0.5 * fp32.model_bytes
    assert int8.top1_agreement >= 0.95
    assert "static QDQ" in int8.settings["int8"] and int8.settings["activations"] == "U8"


def test_structured_pruning_makes_a_smaller_dense_model(small_run):
    r = _rows(small_run)
    base, pruned = r.loc[("torch", "fp32", "none", 16)], r.loc[("torch", "fp32", "pruned", 16)]
    assert pruned.params < 0.5 * base.params
    assert pruned.model_bytes <= 0.7 * base.model_bytes
    assert r.loc[("onnxruntime", "fp32", "pruned", 16)].model_bytes <= 0.7 * r.loc[("onnxruntime", "fp32", "none", 16)].model_bytes
    assert pruned.task_accuracy is not None


def test_distilled_student_is_small_and_reports_accuracy_and_drift(small_run):
    r = _rows(small_run)
    base, student = r.loc[("torch", "fp32", "none", 16)], r.loc[("torch", "fp32", "distilled", 16)]
    assert student.params <= 0.5 * base.params
    assert student.settings["teacher_params"] == base.params
    assert 0 < student.task_accuracy <= 1 and student.top1_agreement is not None


def test_magnitude_pruning_reports_sparsity_and_keeps_shapes():
    from types import SimpleNamespace

    from optbench.data import Items, Splits
    from optbench.spec.models import PruneSettings
    from optbench.transforms.prune import prune

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    rng = np.random.default_rng(0)
    items = Items({"input": rng.standard_normal((64, 1, 8, 8)).astype(np.float32)}, rng.integers(0, 10, 64))
    ctx = SimpleNamespace(splits=Splits(items, items, items), spec=SimpleNamespace(seed=0))

    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input):
            return self.m(input)

    before = Wrap(copy.deepcopy(model))
    pruned, facts = prune(before, PruneSettings(method="magnitude", amount=0.6, finetune_epochs=1), ctx)
    assert facts["sparsity"] == pytest.approx(0.6, abs=0.02)  # the fine-tune keeps the zeros
    assert count_params(pruned) == count_params(before)


MODELOPT_SPEC = """\
name: mtq
model: {source: python, entrypoint: "experiments/models/digits.py:build", kwargs: {epochs: 4, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 128, eval: 256}
variants:
  precision: [fp32, int8]
  batch_size: [16]
  int8: [{mode: modelopt, method: minmax, per_channel: true, samples: 128}]
backends: [onnxruntime]
measure: {warmup_s: 0.05, min_iters: 15, min_duration_s: 0.2, max_iters: 300}
"""


@pytest.mark.slow  # ModelOpt calibration and export, ~20 s
def test_modelopt_ptq_exports_explicit_qdq_that_onnxruntime_runs(tmp_path, cache_dir):
    """PyTorch-side PTQ (modelopt, calibration forward loop) → Q/DQ ONNX → measured on onnxruntime."""
    import importlib.util

    import onnx

    if importlib.util.find_spec("modelopt") is None:  # importing it here would cost minutes: the worker does
        pytest.skip("nvidia-modelopt is not installed (extra 'modelopt')")
    from optbench.cli import main

    run = tmp_path / "run"
    assert main(["run", str(write_spec(tmp_path, MODELOPT_SPEC)), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run).set_index("precision")
    assert (df.status == "ok").all(), df[["status", "error"]].to_string()
    int8 = df.loc["int8"]
    assert int8.int8["mode"] == "modelopt" and ".int8-mtq." in int8.variant_id
    assert "modelopt PTQ" in int8.settings["int8"]
    assert int8.top1_agreement >= 0.95 and int8.task_accuracy >= df.loc["fp32", "task_accuracy"] - 0.03
    ops = {n.op_type for n in onnx.load(built_model(cache_dir, "modelopt PTQ")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


OPTYPES_SPEC = """\
name: optypes
model: {source: python, entrypoint: "experiments/models/digits.py:build", kwargs: {epochs: 2, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 64, eval: 128}
variants:
  precision: [int8]
  batch_size: [16]
  int8:
    - {mode: static, method: percentile, samples: 64, op_types: [Gemm]}
    - {mode: dynamic, op_types: [Conv]}
    - {mode: dynamic, op_types: [Gemm]}
backends: [onnxruntime]
measure: {warmup_s: 0.05, min_iters: 10, min_duration_s: 0.1, max_iters: 100}
"""


def built_model(cache_dir, *markers: str):
    """The cached ONNX file whose recorded build facts mention every one of ``markers``."""
    built = [p for p in cache_dir.rglob("model.onnx") if (p.parent / "facts.json").exists()
             and all(m in (p.parent / "facts.json").read_text() for m in markers)]
    assert built, f"no ONNX file built with {markers} in the cache"
    return built[0]


@pytest.mark.slow  # 20-70 s on two cores
def test_int8_op_types_quantize_only_the_chosen_ops(tmp_path, cache_dir):
    """op_types quantizes the chosen ops and leaves the rest in fp32 (what transformers need for their
    outlier-heavy ops); an op type the mode's quantizer does not handle is an error, not a silent fp32 model."""
    import onnx

    from optbench.cli import main

    run = tmp_path / "run"
    assert main(["run", str(write_spec(tmp_path, OPTYPES_SPEC)), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run)
    df = df.set_index(df.variant_id.str.split(".").str[1])
    bad = df.loc["int8-dyn-gemm"]
    assert bad.status == "failed" and "int8 op_types ['Gemm']: onnxruntime's dynamic quantization" in bad.error
    ok = df.drop("int8-dyn-gemm")
    assert sorted(ok.index) == ["int8-dyn-conv", "int8-percentile-pc-u8-gemm"]
    assert (ok.status == "ok").all(), ok[["status", "error"]].to_string()
    assert [s["op_types"] for s in ok.settings] == [["Gemm"] if "gemm" in i else ["Conv"] for i in ok.index]
    assert (ok.top1_agreement >= 0.95).all()

    def consumers(graph, producer: str) -> set[str]:
        made = {o for n in graph.node if n.op_type == producer for o in n.output}
        return {n.op_type for n in graph.node if set(n.input) & made}

    static = onnx.load(built_model(cache_dir, "static QDQ, percentile", '"op_types": ["Gemm"]')).graph
    assert "Gemm" in consumers(static, "DequantizeLinear") and "Conv" not in consumers(static, "DequantizeLinear")
    dynamic = onnx.load(built_model(cache_dir, "dynamic (weights S8", '"op_types": ["Conv"]')).graph
    ops = {n.op_type for n in dynamic.node}
    assert "ConvInteger" in ops and "Conv" not in ops and "MatMulInteger" not in ops  # the linear layers stay float
