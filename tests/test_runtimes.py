"""Runtimes beside torch and ONNX Runtime: OpenVINO and ExecuTorch measured on the CPU, TensorRT engines built
ahead of time without a GPU (`optbench build`). Each is skipped with the reason where its package is absent."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from optbench.cli import main
from tests.conftest import write_spec

TINY = """\
name: tiny-{backend}
model: {{source: python, entrypoint: "ROOT/experiments/models/digits.py:build", kwargs: {{epochs: 2, width: 8}}}}
inputs: [{{name: image, shape: [batch, 1, 8, 8], dtype: float32}}]
data: {{source: digits, calibration: 64, eval: 128}}
variants:
  precision: [{precisions}]
  batch_size: [1, 8]
  int8: [{{mode: static, method: minmax, per_channel: true, samples: 64, activations: s8, symmetric_activations: true, quantize_bias: false}}]
backends: [{backend}]
measure: {{warmup_s: 0.05, min_iters: 10, min_duration_s: 0.1, max_iters: 200, rounds: 2, round_pause_s: 0}}
"""
ROOT = Path(__file__).resolve().parents[1]


def _spec(tmp_path, backend, precisions):
    text = TINY.format(backend=backend, precisions=precisions).replace("ROOT", str(ROOT))
    return write_spec(tmp_path, text)


def _rows(run):
    from optbench.store import final_rows

    return final_rows(run)


def _need(name: str) -> None:
    """Skip with the backend's own reason where it cannot run here: asked when the test runs, not at collection,
    which would import every runtime (OpenVINO, ExecuTorch, TVM: tens of seconds) for any test selection."""
    from optbench.backends import get_backend

    if why := get_backend(name).unavailable_reason():
        pytest.skip(why)


@pytest.mark.slow  # 20-70 s on two cores
def test_openvino_fp32_and_nncf_int8(tmp_path, cache_dir):
    _need("openvino")
    run = tmp_path / "run"
    assert main(["run", str(_spec(tmp_path, "openvino", "fp32, int8")), "--run-dir", str(run), "--quiet",
                 "--no-report"]) == 0
    rows = _rows(run)
    assert {r["status"] for r in rows.values()} == {"ok"}, {k: r.get("error") for k, r in rows.items()}
    fp32 = [r for r in rows.values() if r["precision"] == "fp32"]
    int8 = [r for r in rows.values() if r["precision"] == "int8"]
    assert all(r["drift_rel_l2"] < 1e-3 for r in fp32)
    assert all(r["settings"]["openvino_runtime"]["inference_precision"] == "f32" for r in fp32)
    for r in int8:  # NNCF put FakeQuantize ops in the IR, which is smaller than the fp32 ONNX
        assert r["settings"]["openvino_int8"]["fake_quantize_ops"] > 0
        assert r["model_bytes"] < r["settings"]["onnx_bytes"]
        assert r["task_accuracy"] > 0.8
    # one int8 IR serves every batch size: calibrated on single items, the same drift at batch 1 and 8
    assert len({round(r["drift_rel_l2"], 6) for r in int8}) == 1


def test_openvino_plans_what_the_cpu_cannot_do_as_skipped():
    from optbench.backends import Target, get_backend
    from optbench.backends.openvino import OvOptions, cpu_capabilities

    ov = get_backend("openvino")
    if ov.unavailable_reason():
        pytest.skip(ov.unavailable_reason())
    caps = cpu_capabilities()
    for precision in ("fp16", "bf16"):
        reason = ov.skip_reason(Target(precision, "cpu", 1, {}, "none", None, "python"), OvOptions())
        assert (reason is None) == (precision.upper() in caps), (precision, caps, reason)
    dyn = ov.skip_reason(Target("int8", "cpu", 1, {}, "none", {"mode": "dynamic"}, "python"), OvOptions())
    assert "static" in dyn


@pytest.mark.slow  # an ExecuTorch lowering, about a minute
def test_executorch_xnnpack_fp32_and_pt2e_int8(tmp_path, cache_dir):
    _need("executorch")
    run = tmp_path / "run"
    # `optbench run` as its own process: its workers' forkserver imports ExecuTorch once for the four variants (this
    # test process's forkserver, started for torch and ONNX Runtime, would leave each variant to import it, ~10 s)
    proc = subprocess.run([sys.executable, "-m", "optbench", "run", str(_spec(tmp_path, "executorch", "fp32, int8, fp16")),
                           "--run-dir", str(run), "--quiet", "--no-report"], cwd=ROOT, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _rows(run)
    by = {(r["precision"], r["batch_size"]): r for r in rows.values()}
    assert by[("fp16", 1)]["status"] == "skipped" and "fp16" in by[("fp16", 1)]["error"]
    for p in ("fp32", "int8"):
        for b in (1, 8):
            r = by[(p, b)]
            assert r["status"] == "ok", r.get("error")
            assert r["settings"]["executorch"]["delegate_calls"] >= 1  # lowered to XNNPACK, not portable ops
    assert all(by[("fp32", b)]["drift_rel_l2"] < 1e-3 for b in (1, 8))
    assert all(by[("int8", b)]["model_bytes"] < by[("fp32", b)]["model_bytes"] / 2 for b in (1, 8))
    assert all(by[("int8", b)]["task_accuracy"] > 0.8 for b in (1, 8))


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
@pytest.mark.tensorrt
def test_build_writes_tensorrt_engines_with_a_dynamic_batch_profile(tmp_path, cache_dir, capsys):
    """`optbench build` with the tensorrt backend: real fp32 and fp16 engines (TensorRT-RTX compiles ahead of time
    without a GPU), one optimization profile over the spec's batch sizes, strongly typed networks."""
    run = tmp_path / "build"
    assert main(["build", str(_spec(tmp_path, "tensorrt", "fp32, fp16, int8")), "--run-dir", str(run), "--quiet"]) == 0
    rows = _rows(run)
    assert {r["status"] for r in rows.values()} == {"built"}, {k: r.get("error") for k, r in rows.items()}
    engines = sorted(Path(cache_dir).rglob("model.engine"))
    assert len(engines) >= 2 and all(e.stat().st_size > 1000 for e in engines)
    for r in rows.values():
        trt = r["settings"]["tensorrt"]
        assert trt["build_plan"]["profiles"]["image"] == [[1, 1, 8, 8], [8, 1, 8, 8], [8, 1, 8, 8]]
        assert trt["build_plan"]["strongly_typed"] and trt["network"]["layers"] > 0
        want = {"fp16": "HALF", "int8": "INT8", "fp32": "FLOAT"}[r["precision"]]
        assert want in trt["network"]["tensor_types"], trt["network"]
        assert r["model_bytes"] > 0 and r["build_s"] > 0
        assert "available" in trt["engine_inspector"]
    out = capsys.readouterr().out
    assert "6 built, 0 skipped, 0 failed" in out
    # a run on this machine measures nothing it cannot: the variants are skipped with the reason
    from optbench.backends.tensorrt import unavailable

    if unavailable():
        assert main(["plan", str(_spec(tmp_path, "tensorrt", "fp32"))]) == 0
        assert "optbench build" in capsys.readouterr().out
    marker = json.loads((run / ".optbench-run.json").read_text())
    assert marker["mode"] == "build"
    assert main(["run", str(_spec(tmp_path, "tensorrt", "fp32, fp16, int8")), "--run-dir", str(run), "--resume"]) == 2


@pytest.mark.slow  # two TVM compilations, ~30 s
def test_tvm_compiles_for_this_cpu_at_fp32_and_mixed_fp16(tmp_path, cache_dir):
    _need("tvm")
    run = tmp_path / "run"
    assert main(["run", str(_spec(tmp_path, "tvm", "fp32, fp16, int8")), "--run-dir", str(run), "--quiet",
                 "--no-report"]) == 0
    by = {(r["precision"], r["batch_size"]): r for r in _rows(run).values()}
    assert by[("int8", 1)]["status"] == "skipped"
    for b in (1, 8):
        fp32, fp16 = by[("fp32", b)], by[("fp16", b)]
        assert fp32["status"] == fp16["status"] == "ok", (fp32.get("error"), fp16.get("error"))
        assert fp32["drift_rel_l2"] < 1e-3 and 1e-6 < fp16["drift_rel_l2"] < 2e-2  # fp16 really ran in fp16
        assert fp32["settings"]["tvm"]["target"]["mcpu"] not in ("", "generic")
        assert fp32["settings"]["tvm"]["input_shapes"]["image"][0] == b
        assert fp16["settings"]["tvm"]["float16_mentions"] > 0 == fp32["settings"]["tvm"]["float16_mentions"]


@pytest.mark.slow  # 20-70 s on two cores
def test_ncnn_from_pnnx_at_fp32_and_fp16_storage(tmp_path, cache_dir):
    _need("ncnn")
    run = tmp_path / "run"
    assert main(["run", str(_spec(tmp_path, "ncnn", "fp32, fp16, int8")), "--run-dir", str(run), "--quiet",
                 "--no-report"]) == 0
    by = {(r["precision"], r["batch_size"]): r for r in _rows(run).values()}
    assert "ncnn2int8" in by[("int8", 1)]["error"]
    for b in (1, 8):
        fp32, fp16 = by[("fp32", b)], by[("fp16", b)]
        assert fp32["status"] == fp16["status"] == "ok", (fp32.get("error"), fp16.get("error"))
        assert fp32["drift_rel_l2"] < 1e-3 and fp16["drift_rel_l2"] < 1e-2
        assert fp16["model_bytes"] < 0.6 * fp32["model_bytes"]  # fp16 weights from pnnx
        assert fp32["settings"]["ncnn"]["weights"] == "fp32" and fp16["settings"]["ncnn"]["weights"] == "fp16"
        assert fp32["task_accuracy"] == pytest.approx(by[("fp32", 1)]["task_accuracy"])


def test_litert_fp32_fp16_weights_and_full_integer_int8(tmp_path, cache_dir):
    _need("litert")
    run = tmp_path / "run"
    assert main(["run", str(_spec(tmp_path, "litert", "fp32, fp16, int8")), "--run-dir", str(run), "--quiet",
                 "--no-report"]) == 0
    by = {(r["precision"], r["batch_size"]): r for r in _rows(run).values()}
    for b in (1, 8):
        fp32, fp16, int8 = by[("fp32", b)], by[("fp16", b)], by[("int8", b)]
        assert {fp32["status"], fp16["status"], int8["status"]} == {"ok"}, (fp32.get("error"), int8.get("error"))
        assert fp32["drift_rel_l2"] < 1e-3 and fp16["drift_rel_l2"] < 1e-2
        assert "float16" in fp16["settings"]["litert"]["tensor_types"]
        assert "int8" in int8["settings"]["litert"]["tensor_types"]
        assert "float32" not in int8["settings"]["litert"]["tensor_types"]  # full integer, inputs and outputs too
        assert int8["model_bytes"] < fp16["model_bytes"] < fp32["model_bytes"]
        assert int8["task_accuracy"] > 0.8


def _site(root: Path, dist: str, version: str, package: str) -> Path:
    """A folder on the path holding ``package`` as installed by the distribution ``dist`` (its metadata)."""
    (root / package).mkdir(parents=True)
    (root / package / "__init__.py").write_text(f"__version__ = {version!r}\n")
    info = root / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "top_level.txt").write_text(package + "\n")
    (info / "RECORD").write_text(f"{package}/__init__.py,,\n{info.name}/METADATA,,\n")
    return root


def test_the_runtime_version_is_the_distribution_imported_not_the_first_found(tmp_path, monkeypatch):
    """A GPU build installed in a folder ahead on the path of the system's CPU build (onnxruntime-gpu ahead of
    onnxruntime): the version recorded is the one whose package is imported."""
    import importlib

    from optbench.backends import base

    system = _site(tmp_path / "system", "obtestrt", "1.30.0", "obtestrt")
    monkeypatch.syspath_prepend(str(system))
    base._distributions_of.cache_clear()
    importlib.invalidate_caches()
    assert base.owning_distribution("obtestrt", "obtestrt") == ("obtestrt", "1.30.0")
    ahead = _site(tmp_path / "ahead", "obtestrt-gpu", "1.31.1", "obtestrt")
    monkeypatch.syspath_prepend(str(ahead))
    base._distributions_of.cache_clear()
    importlib.invalidate_caches()
    assert base.owning_distribution("obtestrt.sub", "obtestrt") == ("obtestrt-gpu", "1.31.1")
    assert base.owning_distribution("obtestrt_absent", "obtestrt") is None
    base._distributions_of.cache_clear()
