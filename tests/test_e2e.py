"""End-to-end CLI run (the shared small sweep): real digits data, real torch and ONNX Runtime on the CPU."""

import json

import pytest

import optbench
from optbench.cli import main
from optbench.row import SCHEMA_VERSION


@pytest.fixture(scope="module")
def tiny_run(small_run):
    return small_run


def test_run_directory_layout(tiny_run):
    for name in ("spec.yaml", "env.json", "results.jsonl", "results.csv", "plan.json"):
        assert (tiny_run / name).exists(), name
    env = json.loads((tiny_run / "env.json").read_text())
    assert env["libraries"]["torch"] and env["cpu"]


def test_one_row_per_variant_with_statuses(tiny_run):
    df = optbench.load_results(tiny_run)
    assert len(df) == len(json.loads((tiny_run / "plan.json").read_text())) == 24
    ok = df[df.status == "ok"]
    assert set(ok.backend) == {"torch", "onnxruntime"}
    assert set(ok[ok.backend == "onnxruntime"].precision) == {"fp32", "int8"}
    skipped = df[df.status == "skipped"]
    assert set(zip(skipped.backend, skipped.precision)) == {("torch", "int8")}
    assert df[df.status == "skipped"].error.str.len().min() > 10
    assert (df.schema_version == SCHEMA_VERSION).all()


def test_measurements_and_drift(tiny_run):
    df = optbench.load_results(tiny_run)
    ok = df[df.status == "ok"]
    assert (ok.latency_ms_p50 > 0).all() and (ok.iterations >= 5).all()
    assert (ok.latency_ms_p50 <= ok.latency_ms_p99).all()
    assert (ok.throughput_items_s > 0).all() and (ok.peak_rss_bytes > 0).all()
    assert all(len(s) == n for s, n in zip(ok.samples_ms, ok.iterations))
    ort = ok[(ok.backend == "onnxruntime") & (ok.precision == "fp32") & (ok["transform"] == "none")]
    assert (ort.drift_rel_l2 < 1e-4).all() and (ort.top1_agreement == 1.0).all()
    assert (ort.model_bytes > 0).all() and (ort.build_s > 0).all()
    torch_rows = ok[ok.backend == "torch"]
    plain = torch_rows[torch_rows["transform"] == "none"]
    assert (plain.drift_rel_l2 < 1e-5).all()  # same module; only batch-size kernel differences
    assert ok.task_accuracy.notna().all()


def test_existing_run_dir_is_not_overwritten(tiny_run, capsys):
    code = main(["run", str(tiny_run / "spec.yaml"), "--run-dir", str(tiny_run), "--quiet"])
    assert code == 2
    assert "--force" in capsys.readouterr().err
