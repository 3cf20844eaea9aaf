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
                 "measure.min_duration_s=0.05", "--run-dir", str(run), "--no-report"]) == 0
    out = capsys.readouterr().out
    assert "read as the batch" in out and "random inputs" in out
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines() if x.strip()]
    final = {r["variant_id"]: r for r in rows}
    assert len(final) == 4 and all(r["status"] == "ok" for r in final.values())
    int8 = [r for r in final.values() if r["precision"] == "int8"]
    assert all(any("calibrated on random inputs" in w["message"] for w in r["warnings"]) for r in int8)
