"""Model files of other frameworks, end to end with `optbench run` on tiny specs: TorchScript, torch.export,
TensorFlow SavedModel and frozen graph, TFLite, OpenVINO IR. The reference is the framework that saved the model;
every converted artifact's row carries its conversion chain and the drift each step added; a conversion that
changes the result fails naming the step; what the spec must choose is one line and exit 2."""

import json
from pathlib import Path

import pytest

from optbench.cli import main
from tests.conftest import write_spec
from tests.models import frameworks as fw

MEASURE = "measure: {warmup_s: 0.0, min_iters: 3, min_duration_s: 0.0, rounds: 1, processes: 1}\n"

TORCH_FILE = """\
name: {name}
model: {{source: {source}, path: "{path}"}}
inputs: [{{name: image, shape: [batch, 1, 8, 8], dtype: float32}}]
data: {{source: digits, calibration: 16, eval: 32}}
variants: {{precision: [fp32], batch_size: [4]}}
backends: [{{name: torch, device: cpu}}, onnxruntime, {{name: torch-compile, device: cpu}}]
"""

KERAS = """\
name: {name}
model: {{source: {source}, path: "{path}"}}
inputs: [{{name: image, shape: [batch, 8, 8, 1], dtype: float32, range: [0, 1]}}]
data: {{source: synthetic, calibration: 16, eval: 32}}
variants: {{precision: {precision}, batch_size: [4]}}
backends: {backends}
"""


def _run(tmp_path, text: str, *extra: str) -> tuple[int, dict]:
    spec = write_spec(tmp_path, text + MEASURE)
    code = main(["run", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report", *extra])
    rows = {}
    if (tmp_path / "run" / "results.jsonl").exists():
        for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines():
            r = json.loads(line)
            rows[(r["backend"], r["precision"])] = r
    return code, rows


def _steps(row: dict) -> list[str]:
    return [s["step"] for s in row["conversion"]]


@pytest.mark.slow  # 20-70 s on two cores
@pytest.mark.parametrize("source, make", [("torchscript", fw.torchscript_file), ("exported", fw.exported_file)])
def test_torch_files_run_with_torch_as_the_reference(tmp_path, cache_dir, source, make):
    path = make(tmp_path / ("digits.pt" if source == "torchscript" else "digits.pt2"))
    code, rows = _run(tmp_path, TORCH_FILE.format(name=source, source=source, path=path))
    assert code == 0
    torch_row, ort = rows[("torch", "fp32")], rows[("onnxruntime", "fp32")]
    assert torch_row["status"] == ort["status"] == "ok", (torch_row["error"], ort["error"])
    assert torch_row["reference"].startswith("torch") and torch_row["model_format"] == source
    assert torch_row["conversion"] == []  # torch on the CPU in fp32 is the reference's own computation
    assert _steps(ort) == ["torch → onnx", "onnx → onnxruntime fp32"]
    assert ort["conversion"][0]["opset"] == 17 and ort["conversion"][0]["drift_rel_l2"] < 1e-5
    compiled = rows[("torch-compile", "fp32")]
    if source == "torchscript":
        assert compiled["status"] == "skipped" and "TorchScript" in compiled["error"]
    assert main(["check", str(tmp_path / "run")]) == 0


@pytest.fixture(scope="module")
def keras_files(tmp_path_factory):
    fw.import_tensorflow()
    pytest.importorskip("tensorflow", reason="the 'tensorflow' extra (tensorflow-cpu, tf2onnx) is not installed")
    pytest.importorskip("tf2onnx", reason="the 'tensorflow' extra (tensorflow-cpu, tf2onnx) is not installed")
    d = tmp_path_factory.mktemp("keras")
    model = fw.keras_digits()
    saved = fw.saved_model(model, d / "digits_savedmodel")
    return {"saved": saved, "frozen": fw.frozen_graph(model, d / "digits.pb"),
            "tflite": fw.tflite_file(saved, d / "digits.tflite"),
            "area": fw.saved_model(fw.keras_digits(area_resize=True), d / "area_savedmodel"), "dir": d}


@pytest.mark.slow  # a TensorFlow SavedModel through the whole chain, ~20 s
def test_saved_model_reference_is_tensorflow_and_each_step_has_its_drift(tmp_path, cache_dir, keras_files):
    code, rows = _run(tmp_path, KERAS.format(name="savedmodel", source="tensorflow", path=keras_files["saved"],
                                             precision="[fp32, fp16]", backends="[tensorflow, onnxruntime, torch]"))
    assert code == 0
    tf_row, ort, half = rows[("tensorflow", "fp32")], rows[("onnxruntime", "fp32")], rows[("onnxruntime", "fp16")]
    assert tf_row["status"] == ort["status"] == half["status"] == "ok"
    assert ort["reference"].startswith("tensorflow") and "serving_default" in ort["reference"]
    assert ort["reference_backend"] == "tensorflow" and tf_row["conversion"] == []
    assert _steps(ort) == ["tensorflow → onnx", "onnx → onnxruntime fp32"]
    first = ort["conversion"][0]
    assert first["tool"] == "tf2onnx" and first["opset"] == 17 and first["drift_rel_l2"] < 1e-5
    assert _steps(half) == ["tensorflow → onnx", "onnx → onnxruntime fp16"]
    assert 0 < half["conversion"][1]["drift_rel_l2"] < 1e-2
    assert rows[("tensorflow", "fp16")]["status"] == "skipped"
    assert "no torch module" in rows[("torch", "fp32")]["error"]
    assert main(["check", str(tmp_path / "run")]) == 0


def test_frozen_graph_runs_end_to_end(tmp_path, cache_dir, keras_files):
    code, rows = _run(tmp_path, KERAS.format(name="frozen", source="tensorflow", path=keras_files["frozen"],
                                             precision="[fp32]", backends="[tensorflow, onnxruntime]"))
    assert code == 0
    ort = rows[("onnxruntime", "fp32")]
    assert rows[("tensorflow", "fp32")]["status"] == ort["status"] == "ok"
    assert "frozen graph" in ort["reference"] and ort["conversion"][0]["from"] == "frozen graph"
    assert main(["check", str(tmp_path / "run")]) == 0


def test_a_conversion_that_changes_the_result_fails_naming_the_step(tmp_path, cache_dir, keras_files, capsys):
    """Keras' area resize: tf2onnx converts ResizeArea into a Resize that computes another image."""
    code, rows = _run(tmp_path, KERAS.format(name="area", source="tensorflow", path=keras_files["area"],
                                             precision="[fp32]", backends="[tensorflow, onnxruntime]"))
    assert code == 0 and rows[("onnxruntime", "fp32")]["status"] == "ok"
    step = rows[("onnxruntime", "fp32")]["conversion"][0]
    assert step["step"] == "tensorflow → onnx" and step["drift_rel_l2"] > 0.01
    capsys.readouterr()
    assert main(["check", str(tmp_path / "run")]) == 1
    out = capsys.readouterr().out
    assert "step 'tensorflow → onnx' (tf2onnx" in out and "a conversion defect" in out


@pytest.mark.parametrize("make, field, words", [
    (fw.two_signatures, "model.signature", ["2 signatures", "double", "square"]),
    (fw.unconvertible, "model.path", ["tf2onnx cannot convert", "'RGBToHSV'"]),
])
def test_what_the_model_cannot_say_is_one_line_and_exit_2(tmp_path, cache_dir, keras_files, capsys, make, field,
                                                           words):
    path = make(tmp_path / "model")
    shape = "[batch, 4]" if make is fw.two_signatures else "[batch, 4, 4, 3]"
    name = "x" if make is fw.two_signatures else "image"
    text = f"""\
name: bad
model: {{source: tensorflow, path: "{path}"}}
inputs: [{{name: {name}, shape: {shape}, dtype: float32}}]
data: {{source: synthetic, calibration: 4, eval: 8}}
backends: [onnxruntime]
"""
    capsys.readouterr()
    code, _ = _run(tmp_path, text)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"field '{field}'" in err and all(w in err for w in words), err


def test_tflite_reference_is_the_interpreter(tmp_path, cache_dir, keras_files):
    code, rows = _run(tmp_path, KERAS.format(name="tflite", source="tflite", path=keras_files["tflite"],
                                             precision="[fp32]", backends="[tflite, onnxruntime]"))
    assert code == 0
    ort = rows[("onnxruntime", "fp32")]
    assert rows[("tflite", "fp32")]["status"] == ort["status"] == "ok"
    assert ort["reference"].startswith("tflite fp32 cpu") and _steps(ort)[0] == "tflite → onnx"
    assert main(["check", str(tmp_path / "run")]) == 0


def test_openvino_ir_runs_on_openvino_only(tmp_path, cache_dir):
    pytest.importorskip("openvino", reason="the 'openvino' extra is not installed")
    path = fw.openvino_ir(tmp_path / "digits.xml")
    text = TORCH_FILE.format(name="ir", source="openvino", path=path).replace(
        "[{name: torch, device: cpu}, onnxruntime, {name: torch-compile, device: cpu}]", "[openvino, onnxruntime, torch]")
    code, rows = _run(tmp_path, text)
    assert code == 0
    ov = rows[("openvino", "fp32")]
    assert ov["status"] == "ok" and ov["reference"].startswith("openvino") and ov["conversion"] == []
    assert ov["drift_rel_l2"] < 1e-6 and ov["model_bytes"] > 0
    assert "OpenVINO writes no ONNX" in rows[("onnxruntime", "fp32")]["error"]
    assert "no torch module" in rows[("torch", "fp32")]["error"]
    assert main(["check", str(tmp_path / "run")]) == 0


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_an_int8_row_of_an_ir_names_the_int8_ir_it_built_and_ran(tmp_path, cache_dir):
    """OpenVINO int8 of an IR source is NNCF's quantization of it, saved as a new IR in the artifact cache: the row's
    artifact is that IR (the source .xml was recorded, so a check or a re-timing ran the fp32 file), and its bytes
    are the row's model_bytes; the file it was made from is kept in the settings."""
    pytest.importorskip("nncf", reason="the 'openvino' extra (nncf) is not installed")
    import openvino as ov

    path = fw.openvino_ir(tmp_path / "digits.xml")
    text = TORCH_FILE.format(name="ir8", source="openvino", path=path).replace(
        "[{name: torch, device: cpu}, onnxruntime, {name: torch-compile, device: cpu}]", "[openvino]").replace(
        "precision: [fp32]", "precision: [fp32, int8]") + "measure: {mode: judge}\n"
    spec = write_spec(tmp_path, text)
    code = main(["run", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report"])
    rows = {r["precision"]: r for r in map(json.loads, (tmp_path / "run" / "results.jsonl").read_text().splitlines())}
    assert code == 0 and rows["int8"]["status"] == "ok", rows["int8"]["error"]
    assert rows["fp32"]["artifact"] == str(path)  # the IR as given
    int8 = Path(rows["int8"]["artifact"])
    assert int8 != path and int8.suffix == ".xml" and rows["int8"]["settings"]["built_from"] == str(path)
    ops = [op.get_type_name() for op in ov.Core().read_model(str(int8)).get_ops()]
    assert "FakeQuantize" in ops  # the quantized IR, not the fp32 one
    assert rows["int8"]["model_bytes"] == int8.stat().st_size + int8.with_suffix(".bin").stat().st_size


@pytest.mark.slow
def test_keras_applications_mobilenet(tmp_path, cache_dir, keras_files):
    path = fw.mobilenet(tmp_path / "mobilenet")
    text = KERAS.format(name="mobilenet", source="tensorflow", path=path, precision="[fp32]",
                        backends="[tensorflow, onnxruntime]").replace("[batch, 8, 8, 1]", "[batch, 32, 32, 3]")
    code, rows = _run(tmp_path, text)
    assert code == 0
    ort = rows[("onnxruntime", "fp32")]
    assert ort["status"] == "ok" and ort["conversion"][0]["drift_rel_l2"] < 1e-4
    assert main(["check", str(tmp_path / "run")]) == 0


def _file(path, data: bytes = b""):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("source, make, extra, words", [
    ("tensorflow", lambda d: (d / "empty").mkdir() or d / "empty", "", ["holds no saved_model.pb"]),
    ("openvino", lambda d: _file(d / "m.xml", b"<net/>"), "", ["m.bin are not beside m.xml"]),
    ("tensorflow", lambda d: _file(d / "g.pb"), "export: {opset: 19}\n", ["tf2onnx writes ONNX opsets up to 18",
                                                                           "export.opset"]),
    ("openvino", lambda d: _file(d / "m.onnx"), "", ["named by its .xml file"]),
])
def test_file_layouts_are_checked_when_the_spec_loads(tmp_path, capsys, source, make, extra, words):
    path = make(tmp_path)
    spec = write_spec(tmp_path, KERAS.format(name="layout", source=source, path=path, precision="[fp32]",
                                             backends="[onnxruntime]") + extra)
    capsys.readouterr()
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and all(w in err for w in words), err


@pytest.mark.parametrize("source, key", [("tflite", "tflite"), ("tensorflow", "saved")])
def test_framework_files_are_found_inside_installed_packages(tmp_path, monkeypatch, capsys, keras_files, source,
                                                              key):
    """``package:NAME/path`` names a file (or a SavedModel folder) inside an installed package for every file
    source, as for ONNX; a path the package lacks is one line naming the package."""
    import shutil

    pkg = tmp_path / "site" / "shipsmodels"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shipped = keras_files[key]
    (shutil.copytree if shipped.is_dir() else shutil.copy)(shipped, pkg / shipped.name)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    text = KERAS.format(name="pkg", source=source, path="package:shipsmodels/INNER", precision="[fp32]",
                        backends="[onnxruntime]")
    assert main(["plan", str(write_spec(tmp_path, text.replace("INNER", shipped.name)))]) == 0, \
        capsys.readouterr().err
    capsys.readouterr()
    assert main(["plan", str(write_spec(tmp_path, text.replace("INNER", "no/such")))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no file or folder 'no/such' in package 'shipsmodels'" in err[0], err


@pytest.mark.slow  # optbench run in a process of its own (the package must be on its path from the start), ~30 s
def test_a_torchscript_file_in_a_package_is_recorded_as_the_file_and_its_onnx_step_names_its_onnx(tmp_path):
    """'package:NAME/file.pt': prepare.json's model_path is the file found in the package (it was the spec's folder
    joined with the 'package:' text); the 'torch → onnx' step names the fp32 ONNX it made, so the step can be
    checked by running that file."""
    import os
    import subprocess
    import sys

    import numpy as np
    import onnxruntime as ort

    from tests.conftest import ROOT

    pkg = tmp_path / "site" / "tinyts_models"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    model = fw.torchscript_file(pkg / "digits.pt")
    spec = write_spec(tmp_path, TORCH_FILE.format(name="pkg", source="torchscript", path="package:tinyts_models/digits.pt")
                      .replace("onnxruntime, {name: torch-compile, device: cpu}", "onnxruntime") + "measure: {mode: judge}\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "site"), str(ROOT)])}
    proc = subprocess.run([sys.executable, "-m", "optbench", "run", str(spec), "--run-dir", str(tmp_path / "run"),
                           "--quiet", "--no-report"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    prepared = json.loads((tmp_path / "run" / "work" / "prepare.json").read_text())
    assert Path(prepared["model_path"]) == model
    row = next(json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()
               if json.loads(x)["backend"] == "onnxruntime")
    step = row["conversion"][0]
    assert step["step"] == "torch → onnx" and Path(step["onnx"]).is_file()
    sess = ort.InferenceSession(step["onnx"], providers=["CPUExecutionProvider"])
    assert [o.name for o in sess.get_outputs()] and sess.run(None, {sess.get_inputs()[0].name: np.zeros(
        (4, 1, 8, 8), np.float32)})[0].shape[0] == 4
