"""Small user-input mistakes, each one line naming what to write instead, and text from files that reaches the
terminal shown, never run: escape sequences in names, YAML bombs and deep nesting in --set, numbers YAML 1.1 reads
as text, --max-variants 0, --gpus on a machine without them, a resumed search whose settings changed, a damaged
OpenVINO IR, and scalar inputs beside batched ones."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from optbench.cli import main
from tests.conftest import write_spec
from tests.test_serving_bounds import SPEC, _mlp

HOSTILE = "v\x1b]0;owned\x07\x1b[2J"  # sets the terminal's title, then clears the screen


def _one_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _mlp(tmp_path_factory.mktemp("mlp") / "mlp.onnx")


# ---------------------------------------------------------------- text from files on the terminal
def test_escape_sequences_in_names_reach_the_terminal_written_out(tmp_path, capsys):
    pytest.importorskip("sqlalchemy")
    from optbench.history.store import History

    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    h = History(db)
    for i in range(3):
        run = h.record_run(f"r{i}", {"name": "s"}, {"cpu": "CPU" + HOSTILE, "cpu_count": 2}, None, "run",
                           started_at=float(i))
        h.record_row(run, {"variant_id": HOSTILE, "status": "ok", "latency_ms_p50": 2.0,
                           "latency_ms_rounds": [2.0, 2.0]})
    assert main(["history", "--db", db]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b" in out  # written out (the cell may wrap)
    assert main(["history", "--db", db, "--spec", "s" + HOSTILE]) == 2
    err = _one_line(capsys)
    assert "\x1b" not in err and "\\x1b[2J" in err


# ---------------------------------------------------------------- YAML
@pytest.mark.parametrize("value, says", [
    ("&a [1,2,3,4,5,6,7,8,9]", None),
    ("[" + ", ".join(["&a [1,2,3,4,5,6,7,8,9]"] + [f"&{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]"
                                                  for i in range(8)]) + "]", "expands to more than 100,000 values"),
    ("[" * 5000 + "]" * 5000, "deeper than YAML can be read"),
    ("[" * 80 + "]" * 80, "nests lists and mappings 80 deep; at most 64"),
], ids=["a list", "alias bomb", "5000 deep", "80 deep"])
def test_set_values_pass_the_spec_files_yaml_guards(tmp_path, model, value, says, capsys):
    spec = write_spec(tmp_path, SPEC.format(model=model, timeout=900, serving="null"))
    code = main(["plan", str(spec), "--set", f"description={value}"])
    if says is None:
        assert code == 2 and "description" in _one_line(capsys)  # an ordinary list: a type error, no guard
    else:
        assert code == 2 and says in _one_line(capsys)


def test_a_deeply_nested_spec_is_one_line(tmp_path, model, capsys):
    spec = write_spec(tmp_path, SPEC.format(model=model, timeout=900, serving="null") +
                      "description: " + "[" * 5000 + "]" * 5000 + "\n")
    assert main(["plan", str(spec)]) == 2
    assert "deeper than YAML can be read" in _one_line(capsys)


def test_a_number_yaml_reads_as_text_says_how_to_write_it(tmp_path, model, capsys):
    spec = write_spec(tmp_path, SPEC.format(model=model, timeout=900, serving="{scenario: server, qps: [1e12], "
                                                                             "p99_ms: 10}"))
    assert main(["plan", str(spec)]) == 2
    assert "YAML 1.1 reads 1e12 as text, not a number: write 1.0e+12" in _one_line(capsys)


# ---------------------------------------------------------------- flags
def test_max_variants_zero_and_gpus_that_are_not_there_are_refused(tmp_path, model, capsys):
    from optbench.env import gpu_info

    spec = write_spec(tmp_path, SPEC.format(model=model, timeout=900, serving="null"))
    run = ["run", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-history"]
    assert main([*run, "--max-variants", "0"]) == 2
    assert "--max-variants takes how many planned variants may run, at least 1" in _one_line(capsys)
    missing = len(gpu_info())  # the first index this machine does not have
    assert main([*run, "--gpus", str(missing)]) == 2
    assert f"no GPU {missing} on this machine" in _one_line(capsys)
    assert not (tmp_path / "run").exists()


def test_a_resumed_search_names_the_setting_that_changed(tmp_path, capsys):
    from tests.test_constraints import SPEC as TUNE

    spec = write_spec(tmp_path, TUNE + "search: {trials: 2, processes: 1}\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / ".optbench-run.json").write_text(json.dumps({"mode": "tune"}))
    from optbench.specfile.load import load_spec

    settings = load_spec(spec).search.model_dump(mode="json")
    (run_dir / "search.json").write_text(json.dumps({"settings": {**settings, "trials": 5}}))
    assert main(["tune", str(spec), "--run-dir", str(run_dir), "--resume", "--no-history", "--quiet"]) == 2
    assert "(search.trials: 5 then, 2 now)" in _one_line(capsys)


# ---------------------------------------------------------------- files and data
def test_a_damaged_openvino_ir_says_why_in_full(tmp_path):
    pytest.importorskip("openvino", reason="the 'openvino' extra is not installed")
    from optbench.errors import SpecError
    from optbench.models import load_model
    from optbench.spec.model_files import OpenvinoModel
    from tests.models import frameworks as fw

    xml = fw.openvino_ir(tmp_path / "m.xml")
    xml.with_suffix(".bin").write_bytes(xml.with_suffix(".bin").read_bytes()[:10])
    with pytest.raises(SpecError, match="not an OpenVINO IR: RuntimeError: Incorrect weights in bin file!"):
        load_model(OpenvinoModel(source="openvino", path=str(xml)), Path("/"))


def test_a_scalar_input_beside_a_batched_one_is_fed_alike_at_every_batch(tmp_path):
    """A scalar input (shape []) is a 0-d array, not a numpy scalar ONNX Runtime refuses; random data gives it one
    value, so the reference's batch and a variant's are fed the same."""
    from optbench.data import feeds_of
    from optbench.data.sources import synthetic
    from optbench.specfile.load import validate

    spec = validate({"name": "s", "model": {"source": "onnx", "path": "m.onnx"},
                     "inputs": [{"name": "x", "shape": ["batch", 4], "dtype": "float32"},
                                {"name": "s", "shape": [], "dtype": "float32"}],
                     "data": {"source": "synthetic", "calibration": 4, "eval": 8}, "backends": ["onnxruntime"]},
                    {}, "spec.yaml")
    items = synthetic(spec, tmp_path, 16)
    items.feed = feeds_of(spec.inputs)
    one, four = items.layout(np.array([3])), items.layout(np.array([0, 1, 2, 3]))
    assert isinstance(one["s"], np.ndarray) and one["s"].shape == ()
    assert one["s"] == four["s"] and four["x"].shape == (4, 4)
