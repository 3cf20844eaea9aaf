"""The spec's JSON schema (``optbench schema``): every shipped spec validates against it, and it flags what
loading the spec rejects (a misspelled backend option, an unknown backend, a wrong type)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(ROOT.glob("experiments/*.yaml")) + sorted(ROOT.glob("corpus/*/spec.yaml"))


@pytest.fixture(scope="module")
def validator():
    out = subprocess.run([sys.executable, "-m", "optbench", "schema"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    return jsonschema.Draft202012Validator(json.loads(out))


@pytest.mark.parametrize("path", SPECS, ids=[str(p.relative_to(ROOT)) for p in SPECS])
def test_shipped_spec_validates(validator, path):
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(yaml.safe_load(path.read_text()))]
    assert not errors, errors


@pytest.mark.parametrize("backends", [
    [{"name": "onnxruntime", "graph_optimisation": "all"}],     # misspelled option (inline)
    [{"name": "torch", "options": {"devise": "cpu"}}],          # misspelled option (under options)
    ["onnxruntme"],                                             # unknown backend
    [{"name": "onnxruntime", "threads": "two"}],                # wrong type
])
def test_schema_flags_what_loading_rejects(validator, backends):
    spec = yaml.safe_load((ROOT / "experiments" / "quickstart.yaml").read_text())
    spec["backends"] = backends
    assert list(validator.iter_errors(spec))


def test_env_reads_runtimes_without_importing_them():
    """``optbench env`` names every backend's runtime and version from package metadata alone: no runtime
    module is imported; ``--deep`` imports them and says whether each backend runs here."""
    code = ("import sys, json, contextlib, io\n"
            "from optbench.cli import main\n"
            "buf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            "    main(['env', '--json'])\n"
            "env = json.loads(buf.getvalue())\n"
            "heavy = [m for m in ('torch', 'onnxruntime', 'openvino', 'tvm', 'executorch', 'ncnn', 'pandas') "
            "if m in sys.modules]\n"
            "print(json.dumps({'heavy': heavy, 'env': env}))\n")
    out = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                    check=True).stdout.splitlines()[-1])
    assert out["heavy"] == []
    env = out["env"]
    assert env["runtimes"]["onnxruntime"] and env["runtimes"]["torch"]
    by_name = {b["backend"]: b for b in env["backends"]}
    assert by_name["onnxruntime"]["installed"] is True and "onnxruntime" in by_name["onnxruntime"]["versions"]
    assert "available" not in by_name["onnxruntime"]
