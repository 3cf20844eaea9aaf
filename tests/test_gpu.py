"""GPU tests (marked gpu; skipped with the reason where torch sees no CUDA device)."""

import threading

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
        # device time from CUDA events on the session's own compute stream, checked against the host clock as
        # torch rows are: within the host's call + synchronize, and most of it at batch 8
        assert 0.5 * df.loc[prec, "latency_ms_p50"] < df.loc[prec, "gpu_ms_p50"] <= df.loc[prec, "latency_ms_p50"] * 1.05
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


def _resnet_session(backend: str, tmp_path, **options):
    """A ResNet-18 (10 classes, 64x64) session on CUDA through optbench's backend ``backend``: torch and
    torch-compile in fp16, channels_last; ONNX Runtime on the fp32 ONNX file optbench exports."""
    import numpy as np
    import torch
    import torchvision

    from optbench.backends import Artifact, get_backend
    from optbench.backends.base import Target
    from optbench.export.onnx import export_onnx
    from optbench.spec.models import ExportSettings, InputSpec

    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    cls = get_backend(backend)
    if backend in ("torch", "torch-compile"):
        return cls(cls.Options(device="cuda", channels_last=True, **options)).build(
            Artifact(module=net), Target("fp16", "cuda", 1, {}, "none", None, "torch"))
    inputs = [InputSpec(name="image", shape=["batch", 3, 64, 64])]
    sample = {"image": np.zeros((1, 3, 64, 64), np.float32)}
    export_onnx(net, inputs, sample, tmp_path / "r18.onnx", ExportSettings(), ["logits"])
    return cls(cls.Options(provider="cuda", **options)).build(
        Artifact(onnx_path=tmp_path / "r18.onnx", inputs=inputs, sample=sample),
        Target("fp32", "cuda", 1, {}, "none", None, "onnx"))


@pytest.mark.parametrize("backend,graphs", [("torch", False), ("torch", True), ("onnxruntime", False),
                                            pytest.param("torch-compile", True, marks=pytest.mark.slow)],
                         ids=["torch", "torch-cuda-graphs", "onnxruntime", "torch-compile-cuda-graphs"])
def test_cuda_lanes_answer_as_their_session_does(tmp_path, backend, graphs):
    """Two lanes on their own streams, the pool staged on the GPU, batches of 1, 4 and 8 (padded): every answer
    equals the session's own call on that item, and nothing compiles while they serve (torch-compile: frozen
    weights; the lanes' warm-up compiles the batch-1 graph and one dynamic-batch graph, and captures each size)."""
    import numpy as np

    from optbench.measure.serving.batcher import Batcher, Policy, stage

    if backend == "onnxruntime":
        from optbench.backends.onnxruntime import cuda_provider_reason

        if why := cuda_provider_reason():
            pytest.skip(why)
    session = _resnet_session(backend, tmp_path, **({"freezing": True} if backend == "torch-compile" else {}))
    rng = np.random.default_rng(0)
    xs = [{"image": rng.random((1, 3, 64, 64), dtype=np.float32)} for _ in range(16)]
    name = next(iter(session.infer(xs[0])))
    pool = stage(xs, {"image": 0})
    engine = Batcher(lambda _i: session.lane(pool, {"image": 0}, graphs), {name: 0}, Policy(8, 0.001, (1, 4, 8)), 2)
    got: list = [None] * 48
    done = threading.Semaphore(0)

    def answer(i: int, out) -> None:
        got[i] = out
        done.release()

    try:
        assert "stream" in engine.describe()["lane"] and "once" in engine.describe()["staging"]
        for i in range(48):
            engine.submit(i % 16, lambda out, i=i: answer(i, out))
        for _ in range(48):
            assert done.acquire(timeout=60)
        assert engine.stalls() == []
        if backend == "onnxruntime":  # one session per batch size: the CUDA EP re-plans a session whose shape changes
            for lane in engine.lanes:
                assert sorted(lane.sessions) == [1, 4, 8] and len({id(s) for s in lane.sessions.values()}) == 3
    finally:
        engine.close()
    for i, g in enumerate(got):
        np.testing.assert_allclose(g[name], session.infer(xs[i % 16])[name], rtol=2e-2, atol=2e-2)
