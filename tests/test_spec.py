"""Spec loading: the quickstart validates; each kind of malformed spec exits 2 with one clear line."""

import json
from pathlib import Path

import pytest

from optbench.cli import main
from optbench.specfile.load import load_spec
from tests.conftest import write_spec

GOOD = """\
name: t
model: {source: python, entrypoint: "experiments/models/digits.py:build"}
inputs:
  - {name: image, shape: [batch, 1, 8, 8], dtype: float32}
data: {source: digits, calibration: 64, eval: 64}
variants: {precision: [fp32], batch_size: [1, 8]}
backends: [torch, onnxruntime]
"""


def test_quickstart_loads():
    spec = load_spec("experiments/quickstart.yaml")
    assert spec.name == "quickstart"
    assert spec.measure.min_iters == 20          # from the spec
    assert spec.measure.max_iters == 100000      # from optbench/configs/measure.yaml
    assert spec.export.opset == 17               # from optbench/configs/export.yaml


def run_cli(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


BAD = [
    # (description, spec text, fragments expected in the one-line message)
    ("invalid yaml", GOOD.replace("inputs:", "inputs: [\n"), ["invalid YAML", "spec.yaml:"]),
    ("unknown key with hint", GOOD.replace("backends:", "backend:"), ["unknown key 'backend'", "did you mean 'backends'", ":7"]),
    ("unknown nested key", GOOD.replace("batch_size:", "batchsize:"), ["unknown key 'batchsize'", "did you mean 'batch_size'", "variants.batchsize"]),
    ("wrong type", GOOD.replace("eval: 64", "eval: lots"), ["data.eval", "integer", "'lots'", ":5"]),
    ("negative count", GOOD.replace("eval: 64", "eval: -3"), ["data.eval", "greater than 0", "-3"]),
    ("empty axis", GOOD.replace("[fp32]", "[]"), ["variants.precision", "at least 1"]),
    ("bad precision", GOOD.replace("[fp32]", "[fp64]"), ["variants.precision.0", "fp32", "'fp64'"]),
    ("missing model file", GOOD.replace("digits.py:build", "nope.py:build"), ["entrypoint file not found (looked for ", "nope.py", "model.entrypoint", ":2"]),
    ("bad entrypoint function", GOOD.replace("digits.py:build", "digits.py:nothing"), ["no top-level function 'nothing'"]),
    ("entrypoint without function", GOOD.replace("digits.py:build", "digits.py"), ["model.entrypoint", "path/or/module:function"]),
    ("unknown model source", GOOD.replace("source: python", "source: keras"), ["model", "torchvision", "'keras'"]),
    ("missing field", GOOD.replace('name: t\n', ''), ["field 'name'", "required"]),
    ("dtype mismatch", GOOD.replace("dtype: float32", "dtype: int64"), ["dtype does not match", "float32", "int64"]),
    ("shape mismatch", GOOD.replace("[batch, 1, 8, 8]", "[batch, 3, 8, 8]"), ["shape does not match", "[batch, 3, 8, 8]"]),
    ("rank mismatch", GOOD.replace("[batch, 1, 8, 8]", "[batch, 64]"), ["rank"]),
    ("impossible shape", GOOD.replace("[batch, 1, 8, 8]", "[batch, 0, 8, 8]"), ["inputs.0.shape", "positive"]),
    ("duplicate variants", GOOD.replace("batch_size: [1, 8]", "batch_size: [8, 8]"), ["twice"]),
    ("unknown backend", GOOD.replace("[torch, onnxruntime]", "[torch, onxruntime]"), ["unknown backend 'onxruntime'", "did you mean 'onnxruntime'"]),
    ("bad backend option", GOOD.replace("[torch, onnxruntime]", "[{name: onnxruntime, provider: tpu}]"), ["backends.0.options.provider", "'tpu'"]),
    ("not a mapping", "- just\n- a list\n", ["a mapping"]),
    ("empty file", "", ["empty file"]),
    ("too many items", GOOD.replace("eval: 64", "eval: 1790"), ["fewer than"]),
    ("seq without shapes", GOOD.replace("[batch, 1, 8, 8]", "[batch, 1, 8, width]"), ["dynamic dims", "variants.shapes"]),
]


@pytest.mark.parametrize("desc,text,fragments", BAD, ids=[b[0] for b in BAD])
def test_malformed_spec_exits_2_with_one_line(tmp_path, capsys, desc, text, fragments):
    path = write_spec(tmp_path, text)
    code, out, err = run_cli(capsys, "plan", str(path))
    assert code == 2, (desc, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for frag in fragments:
        assert frag in lines[0], (frag, lines[0])


def test_missing_spec_file(capsys, tmp_path):
    code, _, err = run_cli(capsys, "plan", str(tmp_path / "absent.yaml"))
    assert code == 2 and "spec file not found" in err


def test_schema_is_json_with_descriptions(capsys):
    code, out, _ = run_cli(capsys, "schema")
    schema = json.loads(out)
    assert code == 0
    assert "model" in schema["properties"]
    assert all("description" in p for p in schema["properties"].values())


def test_relative_paths_resolve_from_the_spec_folder_first(tmp_path, monkeypatch):
    """A spec written next to its files runs from any working directory; the spec's folder wins over a file of
    the same name in the working directory."""
    from optbench.specfile.load import resolve_path

    here, there = tmp_path / "cwd", tmp_path / "specs"
    (here / "data").mkdir(parents=True)
    (there / "data").mkdir(parents=True)
    (here / "data" / "x.txt").write_text("cwd")
    (there / "data" / "x.txt").write_text("spec")
    (here / "only-here.txt").write_text("cwd")
    monkeypatch.chdir(here)
    assert resolve_path("data/x.txt", there / "s.yaml").read_text() == "spec"
    assert resolve_path("only-here.txt", there / "s.yaml").read_text() == "cwd"
    assert resolve_path("missing.txt", there / "s.yaml") == there / "missing.txt"


def test_the_quickstart_plans_from_another_folder(tmp_path, monkeypatch, capsys):
    from optbench.cli import main

    spec = Path(__file__).resolve().parents[1] / "experiments" / "quickstart.yaml"
    monkeypatch.chdir(tmp_path)
    assert main(["plan", str(spec)]) == 0
    assert "18 planned" in capsys.readouterr().out
