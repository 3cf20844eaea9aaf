"""ONNX files nobody here wrote: normalisation before conversion, graph facts, calibration-data cache keys,
spec-against-graph checks, scalar inputs and batch on axis 1, a shape the model rejects, NaN outputs."""

import json

import numpy as np
import pytest

import optbench
from optbench.cli import main
from tests.conftest import write_spec
from tests.models.onnx_models import paddle_like, stateful, width_bound

PADDLE = """\
name: paddle
model: {{source: onnx, path: "{model}"}}
inputs: [{{name: x, shape: [batch, 3, 8, 8], dtype: float32}}]
data: {{source: npz, path: "{data}", calibration: 32, eval: 32}}
outputs:
  - {{name: feat, task: {{kind: dense, threshold: 0.5}}}}
variants:
  precision: [fp32, fp16, int8]
  batch_size: [4]
  int8: [{{mode: static, samples: 32}}, {{mode: dynamic}}]
backends: [onnxruntime]
measure: {{warmup_s: 0.0, min_iters: 3, min_duration_s: 0.0}}
"""


def _paddle_run(tmp_path, name="run", seed=0):
    model = paddle_like(tmp_path / "paddle.onnx")
    data = tmp_path / "data.npz"
    if not data.exists():
        np.savez(data, x=np.random.default_rng(seed).uniform(0, 1, (64, 3, 8, 8)).astype(np.float32))
    spec = write_spec(tmp_path, PADDLE.format(model=model, data=data))
    run = tmp_path / name
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    return optbench.load_results(run).set_index("precision", append=True), run


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_constant_weights_are_normalised_and_the_graph_is_read(tmp_path, cache_dir):
    df, run = _paddle_run(tmp_path)
    assert (df.status == "ok").all(), df[["status", "error"]].to_string()
    rows = {r["variant_id"].split(".")[1]: r for r in df.reset_index().to_dict("records")}
    static, dynamic, fp16 = rows["int8-minmax-pc-u8"], rows["int8-dyn"], rows["fp16"]
    norm = static["settings"]["normalized"]
    assert "5 Constant nodes → initializers" in norm and "opset 12 → 13" in norm
    assert static["settings"]["normalized_rel_l2"] < 1e-5
    graph = static["settings"]["int8_graph"]
    assert graph["weights"] == "S8" and graph["granularity"] == "per-channel" and graph["quantized_ops"] == "1/1"
    assert graph["runtime_quantized_weights"] == 0
    # the dynamic quantizer writes Conv weights per-tensor whatever per_channel says: the row says so
    assert dynamic["settings"]["int8_graph"]["granularity"] == "per-tensor"
    assert dynamic["settings"]["per_channel"] is False
    assert any("per-tensor" in w["message"] and w["code"] == "int8_graph" for w in dynamic["warnings"])
    kept = fp16["settings"]["fp32_nodes_kept_for_range"]
    assert list(kept) == ["bn"] and "9.79e+07" in kept["bn"]
    assert fp16["outputs"]["feat"]["drift_rel_l2"] < 1e-2  # the BatchNorm stayed fp32: nothing was clamped
    assert set(fp16["outputs"]) == {"feat", "pooled"}  # every output, the unlisted one too
    ref = json.loads((run / "reference.json").read_text())
    assert ref["reference"].startswith("onnxruntime fp32 cpu")


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_new_calibration_data_at_the_same_path_rebuilds_int8(tmp_path, cache_dir):
    df, _ = _paddle_run(tmp_path, "first")
    first = {r["variant_id"]: r["settings"] for r in df.reset_index().to_dict("records") if "int8-minmax" in r["variant_id"]}
    np.savez(tmp_path / "data.npz", x=np.random.default_rng(7).uniform(0, 2, (64, 3, 8, 8)).astype(np.float32))
    df, _ = _paddle_run(tmp_path, "second")
    second = {r["variant_id"]: r["settings"] for r in df.reset_index().to_dict("records") if "int8-minmax" in r["variant_id"]}
    assert first.keys() == second.keys()
    for vid in first:
        assert first[vid]["calibration"]["digest"] != second[vid]["calibration"]["digest"]
        assert first[vid]["calibration"]["items"] == second[vid]["calibration"]["items"] == 32


@pytest.mark.parametrize("edit,fragments", [
    (("name: x,", "name: image,"), ["no input ['image']", "inputs of the graph: ['x']"]),
    (("dtype: float32}]", "dtype: int64}]"), ["dtype differs", "float32 (graph)", "int64 (spec)"]),
    (("[batch, 3, 8, 8]", "[batch, 4, 8, 8]"), ["axis 1 is 3 in the graph", "(spec)"]),
    (("[batch, 3, 8, 8]", "[batch, 3, 8]"), ["rank differs"]),
    (("name: feat,", "name: features,"), ["no output ['features']", "outputs of the graph: ['feat', 'pooled']"]),
])
def test_plan_checks_the_spec_against_the_graph(tmp_path, capsys, edit, fragments):
    model = paddle_like(tmp_path / "paddle.onnx")
    np.savez(tmp_path / "data.npz", x=np.zeros((64, 3, 8, 8), np.float32))
    spec = write_spec(tmp_path, PADDLE.format(model=model, data=tmp_path / "data.npz").replace(*edit))
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    for frag in fragments:
        assert frag in err[0], (frag, err[0])


def test_package_paths_resolve_without_importing(tmp_path, capsys):
    spec = write_spec(tmp_path, """\
name: pkg
model: {source: onnx, path: "package:optbench/no/such.onnx"}
inputs: [{name: x, shape: [batch, 4]}]
data: {source: synthetic, calibration: 8, eval: 8}
backends: [onnxruntime]
""")
    assert main(["plan", str(spec)]) == 2
    assert "no file 'no/such.onnx' in package 'optbench'" in capsys.readouterr().err


STATEFUL = """\
name: stateful
model: {{source: onnx, path: "{model}"}}
inputs:
  - {{name: x, shape: [batch, 4], dtype: float32}}
  - {{name: state, shape: [2, batch, 3], dtype: float32, range: [-1, 1]}}
  - {{name: k, shape: [], dtype: int64, value: 3}}
data: {{source: synthetic, calibration: 16, eval: 24}}
variants: {{batch_size: [1, 5]}}
backends: [onnxruntime]
measure: {{warmup_s: 0.0, min_iters: 3, min_duration_s: 0.0}}
"""


def test_scalar_inputs_and_batch_on_axis_one(tmp_path, cache_dir):
    spec = write_spec(tmp_path, STATEFUL.format(model=stateful(tmp_path / "stateful.onnx")))
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run)
    assert (df.status == "ok").all(), df[["status", "error"]].to_string()
    for outputs in df.outputs:
        assert set(outputs) == {"y", "stateN"} and outputs["stateN"]["drift_rel_l2"] == 0
    ref = json.loads((run / "reference.json").read_text())
    assert ref["output_axes"] == {"y": 0, "stateN": 1}
    assert ref["output_shapes"] == {"y": [4], "stateN": [2, 3]}  # per item: the batch axis taken out


def test_a_shape_the_model_rejects_fails_only_its_variants(tmp_path, cache_dir):
    spec = write_spec(tmp_path, f"""\
name: widths
model: {{source: onnx, path: "{width_bound(tmp_path / 'w.onnx')}"}}
inputs: [{{name: x, shape: [batch, w], dtype: float32}}]
data: {{source: synthetic, calibration: 8, eval: 8}}
variants: {{batch_size: [2], shapes: [{{w: 8}}, {{w: 5}}]}}
backends: [onnxruntime]
measure: {{warmup_s: 0.0, min_iters: 3, min_duration_s: 0.0}}
""")
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run).set_index("variant_id")
    good = df[df.index.str.contains(".w8-")]
    bad = df[df.index.str.contains(".w5-")]
    assert (good.status == "ok").all() and (bad.status == "failed").all()
    assert bad.error.str.contains("the reference failed at shape {'w': 5}").all()


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_nan_outputs_fail_in_one_line_and_the_report_is_written(tmp_path, cache_dir, capsys):
    spec = write_spec(tmp_path, """\
name: nan
model: {source: python, entrypoint: "tests/models/nan_model.py:build"}
inputs: [{name: x, shape: [batch, 4]}]
data: {source: synthetic, calibration: 8, eval: 16}
variants: {batch_size: [1, 4]}
backends: [{name: torch, device: cpu}]
measure: {warmup_s: 0.0, min_iters: 3, min_duration_s: 0.0}
""")
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet"]) == 0
    assert (run / "report.html").stat().st_size > 1000
    capsys.readouterr()
    for fmt in ("md", "csv"):
        assert main(["report", str(run), "--format", fmt, "-o", str(tmp_path / f"r.{fmt}")]) == 0
    assert main(["check", str(run)]) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and ".bs4-" in fails[0] and "NaN" in fails[0], out
    assert main(["compare", str(run), str(run), "-o", str(tmp_path / "c.html")]) == 0
