"""One end-to-end CLI run of a tiny spec: real digits data, real torch and ONNX Runtime on the CPU."""

import json

import pytest

import optbench
from optbench.cli import main
from tests.conftest import write_spec

TINY = """\
name: tiny
model: {source: python, entrypoint: "experiments/models/digits.py:build", kwargs: {epochs: 3, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 64, eval: 128}
variants: {precision: [fp32, fp16], batch_size: [1, 16]}
backends: [{name: torch, device: cpu}, onnxruntime]
measure: {warmup_s: 0.05, min_iters: 5, min_duration_s: 0.1}
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, cache_dir):
    tmp = tmp_path_factory.mktemp("e2e")
    spec = write_spec(tmp, TINY)
    run_dir = tmp / "run"
    code = main(["run", str(spec), "--run-dir", str(run_dir), "--quiet", "--no-report"])
    assert code == 0
    return run_dir


def test_run_directory_layout(tiny_run):
    for name in ("spec.yaml", "env.json", "results.jsonl", "results.csv", "plan.json"):
        assert (tiny_run / name).exists(), name
    env = json.loads((tiny_run / "env.json").read_text())
    assert env["libraries"]["torch"] and env["cpu"]


def test_one_row_per_variant_with_statuses(tiny_run):
    df = optbench.load_results(tiny_run)
    assert len(df) == len(json.loads((tiny_run / "plan.json").read_text())) == 8
    ok = df[df.status == "ok"]
    assert set(ok.backend) == {"torch", "onnxruntime"}
    assert set(ok[ok.backend == "onnxruntime"].precision) == {"fp32", "fp16"}
    skipped = df[df.status == "skipped"]
    assert set(zip(skipped.backend, skipped.precision)) == {("torch", "fp16")}
    assert df[df.status == "skipped"].error.str.len().min() > 10
    assert (df.schema_version == 1).all()


def test_measurements_and_drift(tiny_run):
    df = optbench.load_results(tiny_run)
    ok = df[df.status == "ok"]
    assert (ok.latency_ms_p50 > 0).all() and (ok.iterations >= 5).all()
    assert (ok.latency_ms_p50 <= ok.latency_ms_p99).all()
    assert (ok.throughput_items_s > 0).all() and (ok.peak_rss_bytes > 0).all()
    assert all(len(s) == n for s, n in zip(ok.samples_ms, ok.iterations))
    ort = ok[(ok.backend == "onnxruntime") & (ok.precision == "fp32")]
    assert (ort.drift_rel_l2 < 1e-4).all() and (ort.top1_agreement == 1.0).all()
    assert (ort.model_bytes > 0).all() and (ort.build_s > 0).all()
    torch_rows = ok[ok.backend == "torch"]
    assert (torch_rows.drift_max_abs == 0).all()
    assert ok.task_accuracy.notna().all()
    fp16 = ok[ok.precision == "fp16"]
    assert (fp16.drift_rel_l2 < 1e-2).all() and fp16.settings.map(lambda s: "fp32 I/O" in s["fp16"]).all()


def test_existing_run_dir_is_not_overwritten(tiny_run, capsys):
    code = main(["run", str(tiny_run / "spec.yaml"), "--run-dir", str(tiny_run), "--quiet"])
    assert code == 2
    assert "--force" in capsys.readouterr().err
