"""How optbench reads a model: batch axes with evidence, fixed batches, data fit, and the defects they prevent."""

import json

import numpy as np
import pytest

from optbench.cli import main
from tests.conftest import write_spec
from tests.models import readings

FAST = "measure: {warmup_s: 0.02, min_iters: 3, min_duration_s: 0.05, rounds: 2}\n"


def _rows(run_dir):
    return {r["variant_id"]: r for r in map(json.loads, (run_dir / "results.jsonl").read_text().splitlines())}


@pytest.mark.slow  # 20-70 s on two cores
def test_time_major_torch_output_is_read_on_axis_1_and_exported_so(tmp_path, cache_dir, capsys):
    """A (T, B, C) output: every time step compared, the export's dynamic batch on axis 1 (axis 0 before)."""
    spec = write_spec(tmp_path, f"""\
name: crnn
model: {{source: python, entrypoint: "tests/models/readings.py:build_crnn"}}
inputs: [{{name: x, shape: [batch, 1, 4, 12], dtype: float32}}]
data: {{source: python, entrypoint: "tests/models/readings.py:strips", calibration: 8, eval: 10}}
outputs: [{{name: output, task: {{kind: ctc, blank: 0}}}}]
variants: {{precision: [fp32], batch_size: [1, 3]}}
backends: [{{name: torch, device: cpu}}, onnxruntime]
{FAST}""")
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet"]) == 0
    read = json.loads((run / "interpretation.json").read_text())
    out = read["outputs"][0]
    assert out["batch_axis"] == 1 and "axis 1 follows the batch" in out["evidence"]
    assert out["seen"] == {"7": [12, 7, 11], "11": [12, 11, 11]}
    ref = json.loads((run / "reference.json").read_text())
    assert ref["output_shapes"]["output"] == [12, 11]  # every time step of each item, not a slice
    assert ref["reference_batch"] == 10  # the 10 eval items in one batch, not padded with repeats to 64
    rows = _rows(run)
    assert all(r["status"] == "ok" for r in rows.values()), [r.get("error") for r in rows.values()]
    ort = [r for r in rows.values() if r["backend"] == "onnxruntime"]
    assert len(ort) == 2 and all(r["drift_rel_l2"] < 1e-5 and r["outputs"]["output"]["ctc_exact_rate"] == 1.0
                                 for r in ort)  # bs3 runs: the export's batch really is axis 1
    assert all(r["interpretation"]["outputs"]["output"]["batch_axis"] == 1 for r in rows.values())


def _time_major_spec(tmp_path, model, outputs=""):
    return write_spec(tmp_path, f"""\
name: tm
model: {{source: onnx, path: "{model}"}}
inputs: [{{name: x, shape: [batch, 4, t], dtype: float32}}]
data: {{source: python, entrypoint: "tests/models/readings.py:seq", calibration: 8, eval: 8}}
{outputs}variants: {{precision: [fp32], batch_size: [1], shapes: [{{t: 12}}]}}
backends: [onnxruntime]
{FAST}""")


def test_a_static_batch_of_one_that_the_graph_misdeclares_stops_at_plan(tmp_path, cache_dir, capsys):
    model = readings.time_major_static(tmp_path / "tm.onnx")
    spec = _time_major_spec(tmp_path, model)
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "output 'y'" in err and "[12, 1, 5]" in err and "{name: y, batch_axis: 1}" in err
    assert main(["run", str(spec), "--run-dir", str(tmp_path / "r0"), "--quiet"]) == 2  # run refuses alike
    assert "batch_axis: 1" in capsys.readouterr().err
    spec = _time_major_spec(tmp_path, model, "outputs: [{name: y, batch_axis: 1}]\n")
    assert main(["plan", str(spec)]) == 0
    out = capsys.readouterr().out
    assert "how optbench reads the model" in out and "declared batch_axis: 1" in out
    assert "the graph declares rank 2 [1, 'seqlen'], the run sees [12, 1, 5]" in out
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet"]) == 0
    (row,) = _rows(run).values()
    assert row["status"] == "ok" and json.loads((run / "reference.json").read_text())["output_shapes"]["y"] == [12, 5]
    assert any("the graph declares rank 2" in w["message"] for w in row["warnings"])  # a declared shape the run contradicts


def test_a_graph_declaration_that_the_run_confirms_settles_a_static_batch(tmp_path, cache_dir, capsys):
    model = readings.time_major_static(tmp_path / "tm.onnx", declared=["t", 1, 5])
    assert main(["plan", str(_time_major_spec(tmp_path, model))]) == 0
    assert "static batch 1: axis 1 is the only axis of size 1, and the graph declares ['t', 1, 5]" in \
        capsys.readouterr().out


def _fixed_spec(tmp_path, batches):
    model = readings.fixed_batch(tmp_path / "fixed.onnx")
    return write_spec(tmp_path, f"""\
name: fixed
model: {{source: onnx, path: "{model}"}}
inputs: [{{name: x, shape: [batch, 6], dtype: float32}}]
data: {{source: python, entrypoint: "tests/models/readings.py:rows6", calibration: 8, eval: 8}}
variants: {{precision: [fp32], batch_size: {batches}}}
backends: [onnxruntime]
{FAST}""")


def test_a_fixed_batch_plans_other_sizes_as_skipped_and_refuses_only_impossible_ones(tmp_path, cache_dir, capsys):
    assert main(["plan", str(_fixed_spec(tmp_path, [1, 4]))]) == 0
    out = capsys.readouterr().out
    assert "model batch: fixed 1 (graph input 'x' fixes axis 0 at 1)" in out
    line = next(x for x in out.splitlines() if ".bs4-" in x)
    assert "skipped" in line and "the model's batch is fixed at 1" in line
    assert main(["plan", str(_fixed_spec(tmp_path, [4]))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "fixed at 1" in err and "variants.batch_size" in err
    run = tmp_path / "run"
    assert main(["run", str(_fixed_spec(tmp_path, [1, 4])), "--run-dir", str(run), "--quiet"]) == 0
    status = {r["batch_size"]: r["status"] for r in _rows(run).values()}
    assert status == {1: "ok", 4: "skipped"}
    assert json.loads((run / "reference.json").read_text())["reference_batch"] == 1


def test_a_shape_point_beyond_the_data_needs_a_fit_policy(tmp_path, capsys):
    model = readings.time_major_static(tmp_path / "tm.onnx", declared=["t", 1, 5])
    spec = _time_major_spec(tmp_path, model).read_text().replace("{t: 12}", "{t: 16}")
    path = write_spec(tmp_path, spec, "wide.yaml")
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err
    assert "asks for 16 but the data holds 12" in err and "data.fit: pad | resize" in err
    for fit, note in (("pad", "t: padded 12 -> 16"), ("resize", "t: resized 12 -> 16")):
        path.write_text(spec.replace("eval: 8}", f"eval: 8, fit: {fit}}}"))
        assert main(["plan", str(path)]) == 0
        assert f"fed x [1, 4, 16] ({note})" in capsys.readouterr().out
    path.write_text(spec.replace("{t: 16}", "{t: 8}"))
    assert main(["plan", str(path)]) == 0
    assert "fed x [1, 4, 8] (t: cropped 12 -> 8)" in capsys.readouterr().out


def test_fit_axis_resizes_linearly_and_refuses_to_resize_ids():
    from optbench.data import fit_axis
    from optbench.errors import SpecError

    ramp = np.linspace(0, 1, 5, dtype=np.float32)[None]
    out, how = fit_axis(ramp, 1, 9, "resize", "x")
    assert how == "resized" and out.shape == (1, 9) and np.all(np.diff(out[0]) >= 0)
    with pytest.raises(SpecError, match="resamples float data"):
        fit_axis(np.arange(5)[None], 1, 9, "resize", "ids")


def test_integer_outputs_are_judged_by_exact_match_and_ctc_reads_ids(tmp_path, cache_dir):
    model = readings.argmax_ids(tmp_path / "ids.onnx")
    spec = write_spec(tmp_path, f"""\
name: ids
model: {{source: onnx, path: "{model}"}}
inputs: [{{name: x, shape: [batch, 6, 4], dtype: float32}}]
data: {{source: python, entrypoint: "tests/models/readings.py:grid", calibration: 16, eval: 16}}
outputs: [{{name: ids, task: {{kind: ctc, blank: 0}}}}]
variants: {{precision: [fp32, fp16], batch_size: [4]}}
backends: [onnxruntime]
{FAST}""")
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet"]) == 0
    for row in _rows(run).values():
        ids = row["outputs"]["ids"]
        assert row["status"] == "ok" and "drift_cosine" not in ids and "drift_cosine" in row["outputs"]["logits"]
        assert 0 <= ids["exact_element_rate"] <= 1 and ids["ctc_exact_rate"] is not None
        if row["precision"] == "fp32":
            assert ids["exact_element_rate"] == 1.0 and ids["exact_item_rate"] == 1.0 and ids["ctc_exact_rate"] == 1.0
    assert np.load(run / "work" / "reference.npz")["static/ids"].dtype == np.int64


def test_exact_match_counts_elements_and_items():
    from optbench.measure.drift import judge_outputs
    from optbench.measure.tasks import TaskContext
    from optbench.outputs import View

    ref = np.array([[1, 2, 3], [4, 5, 6]])
    out = np.array([[1, 2, 3], [4, 0, 6]])
    judged = judge_outputs({"ids": out}, {"ids": ref}, [View("ids", "ids")], None, TaskContext())
    m = judged["outputs"]["ids"]
    assert m["exact_element_rate"] == pytest.approx(5 / 6) and m["exact_item_rate"] == 0.5
    assert "drift_cosine" not in m and judged["worst_output"] == "ids"


def test_drift_after_a_hook_is_marked_and_the_raw_drift_kept_and_hooks_get_copies(tmp_path):
    from optbench.measure.drift import judge_outputs
    from optbench.measure.tasks import TaskContext
    from optbench.outputs import View

    (tmp_path / "hook.py").write_text("import numpy as np\n\ndef soft(a):\n    a -= a.max(-1, keepdims=True)\n"
                                      "    np.exp(a, out=a)\n    a /= a.sum(-1, keepdims=True)\n    return a\n")
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 3, (20, 10))
    out = ref + rng.normal(0, 0.3, ref.shape)
    keep = ref.copy()
    v = View("y", "y", postprocess="hook.py:soft")
    m = judge_outputs({"y": out}, {"y": ref}, [v], None, TaskContext(spec_dir=tmp_path))["outputs"]["y"]
    assert np.array_equal(ref, keep)  # the in-place hook worked on a copy
    assert m["drift_after_postprocess"] is True
    raw = np.linalg.norm(out - ref) / np.linalg.norm(ref)
    assert m["raw_drift_rel_l2"] == pytest.approx(raw) and m["drift_rel_l2"] != pytest.approx(raw)


def test_detection_layouts_are_checked_and_yolov5_decodes(tmp_path):
    from optbench.measure.tasks import TaskContext, evaluate
    from optbench.spec.models import DetectionTask

    rng = np.random.default_rng(0)
    n, nc = 300, 3
    pred = np.concatenate([rng.uniform(10, 300, (2, n, 2)), rng.uniform(5, 40, (2, n, 2)),
                           rng.uniform(0, 1, (2, n, 1 + nc))], axis=2).astype(np.float32)  # [b, N, 5 + nc]
    with pytest.raises(ValueError, match=r"format yolov8 expects \[b, 4 \+ classes, anchors\].*found \[b, 300, 8\]"):
        evaluate(DetectionTask(kind="detection"), pred, pred, None, TaskContext())
    m = evaluate(DetectionTask(kind="detection", format="yolox"), pred, pred, None, TaskContext())
    assert m["det_f1"] == 1.0
    worse = pred.copy()
    worse[..., 4] = rng.uniform(0, 1, worse[..., 4].shape)  # other objectness: other top-k
    assert evaluate(DetectionTask(kind="detection", format="yolov5"), worse, pred, None, TaskContext())["det_f1"] < 1
    boxes = pred[..., :4] / 300
    logits = pred[..., 4:]
    ctx = TaskContext(arrays=({"boxes": boxes, "logits": logits}, {"boxes": boxes, "logits": logits}))
    task = DetectionTask(kind="detection", format="detr", boxes="boxes")
    assert evaluate(task, logits, logits, None, ctx)["det_f1"] == 1.0
    with pytest.raises(ValueError, match="no output 'pred_boxes'"):
        evaluate(task.model_copy(update={"boxes": "pred_boxes"}), logits, logits, None, ctx)


def test_cross_field_spec_errors_are_one_plain_line(tmp_path, capsys):
    spec = write_spec(tmp_path, """\
name: bad
model: {source: python, entrypoint: "experiments/models/digits.py:build"}
inputs: [{name: image, shape: [batch, 1, 8, w], dtype: float32}]
data: {source: digits}
backends: [onnxruntime]
""")
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "(top level)" not in err and "{'name'" not in err and "list their values in variants.shapes" in err
    assert err == f"optbench: error: {spec}:3: inputs have dynamic dims ['w']; list their values in variants.shapes"
    spec.write_text(spec.read_text().replace("w]", "8]").replace("backends", "variants: {batch_size: [4]}\nbackends")
                    .replace("[batch, 1", "[1, 1"))
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert "(top level)" not in err and "batch_size can only be [1]; found [4]" in err and "{'name'" not in err


def test_int8_graph_counts_every_op_that_holds_weights(tmp_path):
    """A dynamic int8 that quantizes MatMul only leaves the LSTM's weights in float: the share says so."""
    import torch
    from onnxruntime.quantization import quantize_dynamic

    from optbench.export.graphfacts import int8_facts

    fp32, int8 = tmp_path / "crnn.onnx", tmp_path / "crnn.int8.onnx"
    torch.onnx.export(readings.build_crnn(), (torch.zeros(1, 1, 4, 12),), str(fp32), dynamo=False,
                      input_names=["x"], output_names=["y"], opset_version=17)
    quantize_dynamic(str(fp32), str(int8), op_types_to_quantize=["MatMul", "Gemm"])
    facts = int8_facts(int8)
    done, total = map(int, facts["quantized_ops"].split("/"))
    assert total > done >= 1 and "LSTM" in facts["float_weight_ops"]
    assert any("left in float: LSTM" in w for w in facts["warnings"])


def test_a_broken_second_runtime_fails_as_a_conversion_defect_and_never_widens_budgets():
    from optbench.check import conversion_defects, noise_floor

    def row(vid, rel):
        return {"variant_id": vid, "status": "ok", "precision": "fp32", "transform": "none",
                "backend": "onnxruntime", "drift_rel_l2": rel}
    rows = [row("onnxruntime.fp32.bs1", 0.5), row("onnxruntime.fp32.bs8", 2e-7)]
    assert noise_floor(rows, "torch fp32 cpu") == 2e-7
    assert noise_floor(rows[:1], "torch fp32 cpu") is None
    (bad,) = conversion_defects(rows, "torch fp32 cpu", lambda r: 1e-3)
    assert bad.variant == "onnxruntime.fp32.bs1" and "conversion defect" in bad.message and not bad.passed
