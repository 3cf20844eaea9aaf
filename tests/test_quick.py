"""Spec-less runs of a model file and --set overrides: what is inferred is said, sizes are never guessed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from optbench.cli import main
from optbench.errors import SpecError
from optbench.quick import apply_overrides, parse_shapes, spec_from_model


def _package_file(pkg: str, rel: str) -> Path:
    found = importlib.util.find_spec(pkg)
    if found is None:
        pytest.skip(f"{pkg} is not installed (the test reads an ONNX file it ships)")
    return Path(next(iter(found.submodule_search_locations))) / rel


def _ppocr_rec() -> Path:
    return _package_file("rapidocr_onnxruntime", "models/ch_PP-OCRv4_rec_infer.onnx")


def test_spec_from_model_says_what_it_infers_and_asks_for_sizes():
    path = _ppocr_rec()
    with pytest.raises(SpecError) as e:  # height '?' and width symbolic: never guessed
        spec_from_model(path, precision=None, batch=None, backends=None, shapes={}, data=None)
    assert "--shapes x_dim2=SIZE,p2o_DynamicDimension_1=SIZE" in str(e.value)
    spec, notes = spec_from_model(path, precision=["fp32", "int8"], batch=[1, 4], backends=None,
                                  shapes={"x_dim2": 48, "p2o_DynamicDimension_1": 320}, data=None)
    assert spec["inputs"] == [{"name": "x", "shape": ["batch", 3, "x_dim2", "p2o_DynamicDimension_1"],
                               "dtype": "float32"}]
    assert spec["variants"] == {"precision": ["fp32", "int8"], "batch_size": [1, 4],
                                "shapes": [{"x_dim2": 48, "p2o_DynamicDimension_1": 320}]}
    assert any("dim 0 ('p2o_DynamicDimension_0') read as the batch" in n for n in notes)
    assert any("random inputs" in n for n in notes)
    with pytest.raises(SpecError, match="not symbolic dims"):
        spec_from_model(path, precision=None, batch=None, backends=None,
                        shapes={"x_dim2": 48, "p2o_DynamicDimension_1": 320, "height": 3}, data=None)


def test_spec_from_model_reads_data_files(tmp_path):
    path = _ppocr_rec()
    np.savez(tmp_path / "d.npz", x=np.zeros((40, 3, 48, 320), np.float32))
    spec, notes = spec_from_model(path, precision=None, batch=None, backends=None,
                                  shapes={"x_dim2": 48, "p2o_DynamicDimension_1": 320}, data=tmp_path / "d.npz")
    assert spec["data"]["source"] == "npz" and spec["data"]["calibration"] + spec["data"]["eval"] <= 40
    assert not any("random" in n for n in notes)
    np.savez(tmp_path / "bad.npz", image=np.zeros((40, 3), np.float32))
    with pytest.raises(SpecError, match=r"has no array for inputs \['x'\]"):
        spec_from_model(path, precision=None, batch=None, backends=None,
                        shapes={"x_dim2": 48, "p2o_DynamicDimension_1": 320}, data=tmp_path / "bad.npz")


def test_set_overrides():
    data = {"measure": {"rounds": 1}, "backends": ["torch", "onnxruntime"]}
    apply_overrides(data, ["measure.rounds=3", "backends.1=openvino", "variants.batch_size=[1, 8]"])
    assert data == {"measure": {"rounds": 3}, "backends": ["torch", "openvino"], "variants": {"batch_size": [1, 8]}}
    for bad in ["measure", "backends.5=x", "measure.rounds.x=1"]:
        with pytest.raises(SpecError):
            apply_overrides(data, [bad])
    with pytest.raises(SpecError, match="SYMBOL=SIZE"):
        parse_shapes("height:640")


def test_bad_flags_are_one_line_and_exit_2(tmp_path, capsys):
    spec = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"
    assert main(["run", str(spec), "--batch", "1,8"]) == 2  # a spec takes --set, not the spec-less flags
    assert "--set" in capsys.readouterr().err
    assert main(["plan", str(spec.parent)]) == 2
    assert "is a folder; give one spec file" in capsys.readouterr().err
    assert main(["run", str(_ppocr_rec()), "--batch", "1,x", "--run-dir", str(tmp_path / "r")]) == 2
    assert "--batch: 'x' is not an integer" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_spec_less_run_of_a_package_model(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", str(_ppocr_rec()), "--precision", "fp32,int8", "--batch", "1,4", "--shapes",
                 "x_dim2=48,p2o_DynamicDimension_1=320", "--set", "measure.rounds=1", "--set",
                 "measure.min_duration_s=0.05", "--set", "data.calibration=8", "--set", "data.eval=8",
                 "--run-dir", str(run), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "read as the batch" in out and "random inputs" in out
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines() if x.strip()]
    final = {r["variant_id"]: r for r in rows}
    assert len(final) == 4 and all(r["status"] == "ok" for r in final.values())
    int8 = [r for r in final.values() if r["precision"] == "int8"]
    assert all(any("calibrated on random inputs" in w["message"] for w in r["warnings"]) for r in int8)


# ---------------------------------------------------------------- model files of every format
@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    from tests.models import frameworks as fw

    d = tmp_path_factory.mktemp("files")
    files = {"onnx": fw.digits_onnx(d / "digits_cnn.onnx"), "torchscript": fw.torchscript_file(d / "digits.jit"),
             "exported": fw.exported_file(d / "digits.pt2")}
    if importlib.util.find_spec("openvino") is not None:
        files["openvino"] = fw.openvino_ir(d / "digits.xml")
    return files


def _plan_json(capsys, *argv: str) -> tuple[int, dict, str]:
    capsys.readouterr()
    code = main(["plan", *argv, "--json"])
    out = capsys.readouterr()
    return code, (json.loads(out.out) if code == 0 else {}), out.err


@pytest.mark.parametrize("kind, extra", [("onnx", []), ("torchscript", ["--input", "image=batch,1,8,8"]),
                                         ("exported", []), ("openvino", [])])
def test_plan_reads_a_model_file_of_every_format(capsys, model_files, kind, extra):
    """`plan FILE`: the format told from the file, the spec made from what it declares, the model run to read it."""
    if kind not in model_files:
        pytest.skip("the 'openvino' extra is not installed")
    code, planned, err = _plan_json(capsys, str(model_files[kind]), "--batch", "1,4", "--precision", "fp32", *extra)
    assert code == 0, err
    interp = planned["interpretation"]
    assert interp["batch"] == "dynamic" and interp["inputs"][0]["shape"] == ["batch", 1, 8, 8]
    assert [(o["name"] in ("logits", "output"), o["batch_axis"], o["seen"]["7"]) for o in interp["outputs"]] == \
        [(True, 0, [7, 10])]
    assert {v["status"] for v in planned["variants"]} == {"planned"}


def test_spec_less_files_that_cannot_say_are_one_line(tmp_path, capsys, model_files):
    import torch

    capsys.readouterr()
    assert main(["plan", str(model_files["torchscript"])]) == 2  # TorchScript records no input shapes
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--input image=batch,DIM" in err, err
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    assert main(["plan", str(tmp_path / "weights.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "torch.save pickle" in err, err
    (tmp_path / "what.bin").write_bytes(b"\x00\x01\x02")
    assert main(["run", str(tmp_path / "what.bin"), "--batch", "1"]) == 2  # neither a spec nor a model: the spec says
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow  # worker processes importing torch: 15-50 s
def test_spec_less_run_of_a_torch_export_program(tmp_path, capsys, model_files):
    run = tmp_path / "run"
    assert main(["run", str(model_files["exported"]), "--precision", "fp32", "--batch", "4", "--set",
                 "measure.mode=judge", "--run-dir",
                 str(run), "--no-report"]) == 0
    assert "a torch.export program" in capsys.readouterr().out
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines() if x.strip()]
    assert {r["backend"]: r["status"] for r in rows} == {"torch": "ok", "onnxruntime": "ok"}
    assert all(r["model_format"] == "exported" and r["reference"].startswith("torch") for r in rows)
    assert all(r["drift_rel_l2"] < 1e-5 for r in rows)
