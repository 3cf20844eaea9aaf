"""A model that keeps state between calls is found before any variant runs, never reported as precision drift:
the reference run twice on the same items must repeat itself, or the spec says what settles it (model.reset,
state declared as inputs and outputs, stateful: accept)."""

import json

import numpy as np
import pytest

from optbench.cli import main
from optbench.errors import SpecError
from optbench.statefulness import TOLERANCE, Repeat, check, rel_l2
from tests.conftest import ROOT, write_spec
from tests.models import stateful

SPEC = """\
name: stateful
model: {model}
inputs: [{{name: image, shape: [batch, 1, 8, 8], dtype: float32}}]
data: {{source: digits, calibration: 16, eval: 32}}
variants: {{precision: [fp32], batch_size: [1, 4]}}
backends: [{{name: torch, device: cpu}}]
measure: {{mode: judge}}
"""
HOOK = ROOT / "tests" / "models" / "stateful.py"


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    return stateful.torchscript_file(tmp_path_factory.mktemp("stateful") / "accumulating.pt")


def _run(tmp_path, model: str, *sets: str) -> tuple[int, dict]:
    spec = write_spec(tmp_path, SPEC.format(model=model))
    args = [a for s in sets for a in ("--set", s)]
    code = main(["run", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report", *args])
    path = tmp_path / "run" / "results.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return code, {r["batch_size"]: r for r in rows}


def test_a_module_with_state_stops_before_any_variant_naming_model_reset(tmp_path, scripted, capsys):
    code, rows = _run(tmp_path, f'{{source: torchscript, path: "{scripted}"}}')
    err = capsys.readouterr().err
    assert code == 2 and rows == {}
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "field 'model.reset'" in err and "model.reset: reset_states" in err and "stateful: accept" in err
    assert "run twice" in err and "the module has reset_states" in err
    assert main(["plan", str(tmp_path / "spec.yaml")]) == 2  # plan reads the file the same way, and stops alike
    assert "model.reset: reset_states" in capsys.readouterr().err
    assert main(["plan", str(tmp_path / "spec.yaml"), "--set", "model.reset=reset_states"]) == 0
    assert "repeat: the same 11 item(s) run twice in a row agree" in capsys.readouterr().out


def test_model_reset_makes_every_row_agree_with_the_reference(tmp_path, scripted):
    code, rows = _run(tmp_path, f'{{source: torchscript, path: "{scripted}", reset: reset_states}}')
    assert code == 0 and set(rows) == {1, 4}
    for r in rows.values():
        assert r["status"] == "ok" and r["drift_rel_l2"] < 1e-6, r["error"]
        assert "stateful" not in [w["code"] for w in r["warnings"]]
    read = json.loads((tmp_path / "run" / "interpretation.json").read_text())
    assert read["repeat"]["reset"] == "reset_states" and max(read["repeat"]["rel_l2"].values()) <= TOLERANCE


def test_stateful_accept_judges_as_is_and_every_row_warns(tmp_path, scripted, capsys):
    code, rows = _run(tmp_path, f'{{source: torchscript, path: "{scripted}"}}', "stateful=accept")
    assert code == 0 and set(rows) == {1, 4}
    for r in rows.values():
        assert r["status"] == "ok"
        assert [w for w in r["warnings"] if w["code"] == "stateful"], r["warnings"]
    assert rows[1]["drift_rel_l2"] > 0.1  # the state's drift, as it is: said, not hidden
    from optbench.interpret import load

    table = load(tmp_path / "run").table()
    assert "repeat: the same 11 item(s) run twice in a row give other outputs" in table and "stateful: accept" in table


def test_a_python_module_resets_through_a_hook(tmp_path):
    code, rows = _run(tmp_path, f'{{source: python, entrypoint: "{HOOK}:build", reset: "{HOOK}:clear_state"}}')
    assert code == 0 and set(rows) == {1, 4}
    assert all(r["status"] == "ok" and r["drift_rel_l2"] < 1e-6 for r in rows.values())


def test_a_reset_the_module_lacks_is_a_spec_error_naming_what_it_has(scripted):
    from optbench.models.reset import with_reset
    from optbench.spec.model_files import TorchScriptModel

    module = __import__("torch").jit.load(str(scripted))
    with pytest.raises(SpecError, match="no method 'reset_all'") as e:
        with_reset(module, TorchScriptModel(source="torchscript", path=str(scripted), reset="reset_all"), ROOT)
    assert e.value.field == "model.reset" and "it has reset_states" in str(e.value)


def test_model_files_are_told_to_declare_their_state_and_nan_repeats_agree():
    onnx_spec = type("S", (), {"stateful": "check", "model": type("M", (), {"kind": type("K", (), {"module": None})(),
                                                                             "reset": None})()})()
    with pytest.raises(SpecError, match="the state declared as inputs and outputs") as e:
        check(onnx_spec, Repeat(1, {"logits": 0.3}))
    assert e.value.field == "stateful"
    check(onnx_spec, Repeat(1, {"logits": 0.0}))  # agrees: nothing to say
    a = np.array([1.0, np.nan, 3.0])
    assert rel_l2(a, a.copy()) == 0.0 and rel_l2(a, np.array([1.0, 2.0, 3.0])) == float("inf")
    assert Repeat(1, {"y": float("nan")}).differs
