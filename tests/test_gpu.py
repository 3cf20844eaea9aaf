"""GPU tests (marked gpu; skipped with the reason where torch sees no CUDA device)."""

import pytest

import optbench
from optbench.cli import main
from optbench.measure.gpu import GpuMonitor
from tests.conftest import write_spec

pytestmark = pytest.mark.gpu

SPEC = """\
name: gpu-small
model: {source: torchvision, name: resnet18, num_classes: 10}
inputs: [{name: image, shape: [batch, 3, 64, 64]}]
data: {source: synthetic, calibration: 16, eval: 32}
variants: {precision: [fp32, fp16, bf16], batch_size: [1, 16]}
backends:
  - {name: torch, device: cuda}
  - {name: torch-compile, device: cuda, only: ["fp16.bs16"], freezing: true}
measure: {warmup_s: 0.2, min_iters: 20, min_duration_s: 0.3, timeout_s: 300}
"""


def test_cuda_rows_carry_device_time_memory_and_drift(tmp_path, cache_dir):
    run = tmp_path / "run"
    assert main(["run", str(write_spec(tmp_path, SPEC)), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run)
    ok = df[df.status == "ok"]
    assert len(ok) == 7, df[["variant_id", "status", "error"]].to_string()
    assert (ok.device == "cuda").all()
    assert (ok.gpu_ms_p50 > 0).all() and (ok.gpu_ms_p50 <= ok.latency_ms_p50 * 1.05).all()
    assert (ok.gpu_peak_bytes > 0).all()
    fp32 = ok[ok.precision == "fp32"]
    assert (fp32.drift_rel_l2 < 1e-3).all()
    half = ok[ok.precision != "fp32"]
    assert (half.drift_cosine > 0.99).all()
    compiled = ok[ok.backend == "torch-compile"]
    assert len(compiled) == 1 and compiled.build_s.iloc[0] > 1.0
    assert compiled.settings.iloc[0]["freezing"] is True
    if GpuMonitor.open() is not None:  # NVML readings: clocks and the process's memory, per variant
        for r in ok.to_dict("records"):
            state = r["settings"]["gpu_state"]["after_timing"]
            assert state["sm_clock_mhz"] > 0 and state["temperature_c"] > 0
            assert r["gpu_process_peak_bytes"] is None or r["gpu_process_peak_bytes"] > r["gpu_peak_bytes"]


ORT_SPEC = """\
name: gpu-ort
model: {source: torchvision, name: resnet18, num_classes: 10}
inputs: [{name: image, shape: [batch, 3, 64, 64]}]
data: {source: synthetic, calibration: 16, eval: 32}
variants: {precision: [fp32, fp16, int8], batch_size: [8]}
backends: [{name: onnxruntime, provider: cuda, cudnn_conv_algo_search: HEURISTIC}]
measure: {warmup_s: 0.2, min_iters: 20, min_duration_s: 0.3, timeout_s: 300}
"""


def test_onnxruntime_cuda_rows_carry_nvml_memory_and_skip_int8(tmp_path, cache_dir):
    from optbench.backends.onnxruntime import cuda_provider_reason

    if why := cuda_provider_reason():
        pytest.skip(why)
    run = tmp_path / "run"
    assert main(["run", str(write_spec(tmp_path, ORT_SPEC)), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run).set_index("precision")
    assert df.loc["int8", "status"] == "skipped" and "int8 kernels" in df.loc["int8", "error"]
    for prec in ("fp32", "fp16"):
        assert df.loc[prec, "status"] == "ok", df.loc[prec, "error"]
        assert df.loc[prec, "drift_cosine"] > 0.99
    # fp32 is fp32: the CUDA EP's TF32 default is turned off (TF32 left ~5e-4 relative error on ResNet-50)
    assert df.loc["fp32", "settings"]["tf32"] is False
    assert df.loc["fp32", "drift_rel_l2"] < 1e-4
    if GpuMonitor.open() is None:
        pytest.skip(f"no NVML here for the memory check: {GpuMonitor.why}")
    for prec in ("fp32", "fp16"):
        settings = df.loc[prec, "settings"]
        if "gpu_memory_note" in settings:  # PID namespace: NVML cannot attribute memory to this process
            pytest.skip(settings["gpu_memory_note"])
        assert settings["gpu_memory"].startswith("NVML per-process peak")
        assert df.loc[prec, "gpu_peak_bytes"] > 100 * 2**20  # CUDA context + cuDNN + weights
