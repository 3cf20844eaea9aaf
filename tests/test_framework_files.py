"""TensorFlow and TFLite model files read as their framework writes them: outputs paired with the reference's by
name (a .tflite whose subgraph lists its outputs in another order than its signature), one node's outputs
``node:0/:1/:2`` kept distinct, SavedModels that only TensorFlow's v1 loader opens, and `plan` of a model file with
no spec. One module fixture builds the models once (TensorFlow's import is most of the cost); the runs' pieces are
called in this process: the reference pass (`prepare`), an ONNX Runtime session, the judge and the conversion
chain, as a worker calls them."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from optbench.cli import main
from optbench.errors import SpecError
from tests.models import frameworks as fw

KERAS2 = Path(__file__).resolve().parent / "data" / "keras2_adam_savedmodel"


@pytest.fixture(scope="module")
def tf_files(tmp_path_factory):
    fw.import_tensorflow()
    pytest.importorskip("tensorflow", reason="the 'tensorflow' extra (tensorflow-cpu, tf2onnx) is not installed")
    pytest.importorskip("tf2onnx", reason="the 'tensorflow' extra (tensorflow-cpu, tf2onnx) is not installed")
    d = tmp_path_factory.mktemp("tf")
    return {"reordered": fw.two_outputs_tflite(d / "reordered.tflite"),
            "unsigned": fw.two_outputs_tflite(d / "unsigned.tflite", reorder=False, signatures=False),
            "fixed": fw.two_outputs_tflite(d / "fixed.tflite", reorder=False, batch=1),
            "split": fw.split_frozen_graph(d / "split.pb"),
            "terminal": fw.split_frozen_graph(d / "terminal.pb", terminal_split=True)}


def _spec(tmp_path: Path, model: dict, inputs: list, backends: list, precision=("fp32",)) -> Path:
    spec = {"name": "t", "model": model, "inputs": inputs, "data": {"source": "synthetic", "calibration": 8, "eval": 16},
            "variants": {"precision": list(precision), "batch_size": [4]}, "backends": backends}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _prepared(spec_path: Path, run: Path, cache_dir: Path):
    """The run's preparation (reference pass, ONNX conversion) in this process, and a variant's context."""
    from optbench.cache import ArtifactCache
    from optbench.run.context import Context, load_splits_file
    from optbench.run.prepare import prepare
    from optbench.specfile.load import load_spec

    spec = load_spec(spec_path)
    run.mkdir()
    info = prepare({"spec": spec.model_dump(mode="json"), "spec_dir": str(spec_path.parent), "run_dir": str(run),
                    "cache_dir": str(cache_dir), "needs_onnx": True})
    return Context(spec, spec_path.parent, run, ArtifactCache(cache_dir), load_splits_file(run / "work" / "data.npz"),
                   info)


def _ort_session(ctx, precision: str = "fp32"):
    from optbench.backends import get_backend
    from optbench.backends.base import Artifact
    from optbench.plan import plan
    from optbench.run.artifacts import onnx_artifact

    v = next(x for x in plan(ctx.spec) if x.backend_name == "onnxruntime" and x.precision == precision)
    cls = get_backend("onnxruntime")
    items = ctx.splits.eval.at_shape(ctx.spec.inputs, v.dims)
    path, _ = onnx_artifact(ctx, v, None, precision)  # the fp32 ONNX, or its fp16 graph, as the worker makes them
    artifact = Artifact(onnx_path=path, inputs=ctx.spec.inputs, sample=next(items.batches(v.batch_size))[0])
    return v, cls(cls.Options()).build(artifact, v.target), items


# ---------------------------------------------------------------- outputs by name
def test_reordered_tflite_outputs_are_judged_by_name(tmp_path, cache_dir, tf_files):
    """tf2onnx keeps the subgraph's order (negated, double); the signature's is (double, negated). Paired by
    position the ONNX Runtime row read rel. L2 3 and blamed the conversion."""
    from optbench.run.chain import conversion_chain
    spec = _spec(tmp_path, {"source": "tflite", "path": str(tf_files["reordered"])},
                 [{"name": "x", "shape": ["batch", 4]}], ["tflite", "onnxruntime"])
    ctx = _prepared(spec, tmp_path / "run", cache_dir)
    assert ctx.prepared["output_names"] == ["double", "negated"]
    v, session, items = _ort_session(ctx)
    judged = _judged(ctx, v, session, items)
    assert set(judged["outputs"]) == {"double", "negated"}
    assert all(o["drift_rel_l2"] < 1e-6 for o in judged["outputs"].values()), judged["outputs"]
    from optbench.run.judge import variant_outputs

    steps = conversion_chain(ctx, v, session_backend(), variant_outputs(ctx, v, session, items),
                             Path(ctx.prepared["model_path"]), None)
    assert steps[0]["step"] == "tflite → onnx" and steps[0]["drift_rel_l2"] < 1e-6, steps


def _judged(ctx, v, session, items) -> dict:
    """The variant's outputs on the eval items judged against the reference's, as the worker judges them."""
    from optbench.run.judge import judge_outputs_of, variant_outputs

    return judge_outputs_of(ctx, v, variant_outputs(ctx, v, session, items))


def session_backend():
    from optbench.backends import get_backend

    cls = get_backend("onnxruntime")
    return cls(cls.Options())


# ---------------------------------------------------------------- tensor names as TensorFlow writes them
@pytest.mark.parametrize("which, outputs", [("split", ["parts", "parts:1", "parts:2"]), ("terminal", None)])
def test_one_nodes_outputs_are_distinct_outputs(tmp_path, cache_dir, tf_files, which, outputs):
    """A frozen graph whose outputs are parts:0, parts:1, parts:2 (one Split node): three outputs, each its own
    tensor, through the ONNX conversion and its fp16 graph (where one name given thrice was a duplicate)."""
    from optbench.models import load_model
    from optbench.spec.models import TensorflowModel

    path = tf_files[which]
    spec = TensorflowModel(source="tensorflow", path=str(path), outputs=outputs)
    native = load_model(spec, tmp_path).native
    assert native.output_names == ["parts:0", "parts:1", "parts:2"]
    spec_path = _spec(tmp_path, spec.model_dump(exclude_none=True), [{"name": "x", "shape": ["batch", 4]}],
                      ["tensorflow", "onnxruntime"], precision=("fp32", "fp16"))
    ctx = _prepared(spec_path, tmp_path / "run", cache_dir)
    from optbench.run.context import load_reference

    ref = load_reference(ctx.run_dir, {})
    assert list(ref) == ["parts:0", "parts:1", "parts:2"]
    assert not np.allclose(ref["parts:0"], ref["parts:1"]) and not np.allclose(ref["parts:1"], ref["parts:2"])
    import onnx

    onnx_path = Path(ctx.prepared["model_path"])
    assert [o.name for o in onnx.load(str(onnx_path)).graph.output] == ["parts:0", "parts:1", "parts:2"]
    for precision, budget in (("fp32", 1e-6), ("fp16", 1e-2)):
        judged = _judged(ctx, *_ort_session(ctx, precision))
        assert sorted(judged["outputs"]) == ["parts:0", "parts:1", "parts:2"]
        assert all(o["drift_rel_l2"] < budget for o in judged["outputs"].values()), (precision, judged["outputs"])


def test_signatureless_tflite_keeps_node_n_names(tmp_path, tf_files):
    from optbench.models import load_model
    from optbench.spec.models import TfliteModel

    native = load_model(TfliteModel(source="tflite", path=str(tf_files["unsigned"])), tmp_path).native
    assert sorted(native.output_names) == ["PartitionedCall:0", "PartitionedCall:1"]


# ---------------------------------------------------------------- SavedModels TensorFlow's object loader refuses
def test_keras2_savedmodel_with_optimizer_slots_loads_by_v1_signatures(tmp_path, cache_dir, tf_files):
    import tensorflow as tf

    if importlib.util.find_spec("tf_keras") is not None:
        pytest.skip("tf-keras is installed: TensorFlow's object loader revives the optimizer then")
    with pytest.raises(AttributeError, match="add_slot"):  # the defect the fallback is for, on this TensorFlow
        tf.saved_model.load(str(KERAS2))
    spec = _spec(tmp_path, {"source": "tensorflow", "path": str(KERAS2)},
                 [{"name": "features", "shape": ["batch", 6]}], ["tensorflow", "onnxruntime"])
    ctx = _prepared(spec, tmp_path / "run", cache_dir)
    assert ctx.prepared["reference"].endswith("(SavedModel signature 'serving_default', v1 signature loader)")
    assert ctx.prepared["native"]["loader"] == "v1 signature loader"
    assert ctx.prepared["conversion"][0]["from"].endswith("v1 signature loader")
    v, session, items = _ort_session(ctx)
    judged = _judged(ctx, v, session, items)  # the ONNX frozen from the v1 session agrees with TensorFlow
    assert judged["outputs"]["scores"]["drift_rel_l2"] < 1e-5


def test_a_savedmodel_no_loader_opens_is_refused_with_tensorflows_words(tmp_path, tf_files):
    from optbench.models import load_model
    from optbench.spec.models import TensorflowModel

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "saved_model.pb").write_bytes(b"\x0a\x03abc")
    with pytest.raises(SpecError) as e:
        load_model(TensorflowModel(source="tensorflow", path=str(folder)), tmp_path)
    text = str(e.value)
    assert "TensorFlow cannot load the SavedModel (tag 'serve')" in text
    assert "tf.saved_model.load: " in text and "tf.compat.v1.saved_model.loader.load: " in text


# ---------------------------------------------------------------- plan of a model file, no spec
def _plan(capsys, *argv: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["plan", *argv, "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else {}), out.err


@pytest.mark.parametrize("which, extra", [("reordered", []), ("keras2", []),
                                          ("split", ["--outputs", "Identity:0,Identity_1:0,Identity_2:0"]),
                                          ("terminal", [])])
def test_plan_reads_a_tensorflow_or_tflite_file(capsys, tf_files, which, extra):
    path = KERAS2 if which == "keras2" else tf_files[which]
    code, planned, err = _plan(capsys, str(path), "--batch", "1,4", *extra)
    assert code == 0, err
    interp = planned["interpretation"]
    assert interp["batch"] == "dynamic" and interp["outputs"], interp
    assert all(o["batch_axis"] == 0 for o in interp["outputs"])
    assert {v["status"] for v in planned["variants"] if v["precision"] == "fp32"} == {"planned"}


def test_plan_skips_batches_a_tflite_file_fixes(capsys, tf_files):
    code, planned, err = _plan(capsys, str(tf_files["fixed"]), "--batch", "1,4", "--precision", "fp32")
    assert code == 0, err
    assert planned["interpretation"]["batch"] == "fixed 1"
    status = {v["batch_size"]: v for v in planned["variants"] if v["backend"] == "tflite"}
    assert status[1]["status"] == "planned" and status[4]["status"] == "skipped"
    assert "fixed at 1" in status[4]["reason"]


def test_a_frozen_graph_with_several_ends_asks_for_outputs(capsys, tf_files):
    code, _, err = _plan(capsys, str(tf_files["split"]))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "ends in 3 nodes" in err and "--outputs" in err


@pytest.mark.slow  # a spec-less run: TensorFlow imported by the run's own processes, 30-80 s
def test_spec_less_run_of_a_reordered_tflite(tmp_path, cache_dir, tf_files, capsys):
    run = tmp_path / "run"
    assert main(["run", str(tf_files["reordered"]), "--precision", "fp32,fp16", "--batch", "4", "--set",
                 "measure.mode=judge",
                 "--run-dir", str(run), "--no-report", "--quiet"]) == 0
    rows = {(r["backend"], r["precision"]): r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}
    ort = rows[("onnxruntime", "fp32")]
    assert ort["status"] == "ok" and ort["drift_rel_l2"] < 1e-6 and ort["conversion"][0]["drift_rel_l2"] < 1e-6
    assert rows[("onnxruntime", "fp16")]["drift_rel_l2"] < 1e-2
    assert main(["check", str(run)]) == 0
