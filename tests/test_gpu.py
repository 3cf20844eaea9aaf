"""GPU tests (marked gpu; skipped with the reason where torch sees no CUDA device)."""

import pytest

import optbench
from optbench.cli import main
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
  - {name: torch-compile, device: cuda, only: ["fp16.bs16"]}
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
