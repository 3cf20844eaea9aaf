"""Without the torch extra: a model file runs on ONNX Runtime and is reported, spec-less and with a spec, in a Python
where importing torch, torchvision or torch-pruning raises ImportError; a spec that needs torch says which extra
installs it, in one line, and exits 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "experiments" / "models" / "digits.onnx"

BLOCKER = '''\
import sys


class _NoTorch:
    """torch is not installed here: every import of it, in this process and in its workers, fails."""

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "torchvision", "torch_pruning"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
'''


@pytest.fixture(scope="module")
def no_torch(tmp_path_factory) -> dict[str, str]:
    site = tmp_path_factory.mktemp("no-torch")
    (site / "sitecustomize.py").write_text(BLOCKER)
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}


def optbench(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "optbench", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


def test_the_blocker_blocks(no_torch):
    proc = subprocess.run([sys.executable, "-c", "import torch"], env=no_torch, capture_output=True, text=True)
    assert proc.returncode == 1 and "ModuleNotFoundError" in proc.stderr


@pytest.mark.slow  # two processes with their worker pools: ~40 s on a shared 2-core machine
def test_a_model_file_runs_and_reports_without_torch(no_torch, tmp_path):
    run = tmp_path / "run"
    proc = optbench(no_torch, "run", str(MODEL), "--precision", "fp32,int8", "--batch", "1", "--run-dir", str(run),
                    "--set", "measure.mode=judge")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    got = {r["variant_id"].split(".")[1]: r["status"] for r in rows(run)}
    assert got == {"fp32": "ok", "int8-minmax-pc-u8": "ok"}, got
    md = optbench(no_torch, "report", str(run), "--format", "md")
    assert md.returncode == 0 and "onnxruntime.int8" in md.stdout, md.stderr[-2000:]


@pytest.mark.slow
def test_a_spec_with_an_onnx_source_runs_without_torch(no_torch, tmp_path):
    run = tmp_path / "run"
    proc = optbench(no_torch, "run", "experiments/quickstart-onnx.yaml", "--run-dir", str(run),
                    "--set", "measure.mode=judge", "--set", "variants.batch_size=[1]")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    done = rows(run)
    assert len(done) == 3 and all(r["status"] == "ok" for r in done), [(r["variant_id"], r["status"]) for r in done]
    assert all(r["task_accuracy"] > 0.9 for r in done)  # real digits, real labels


def test_a_spec_that_needs_torch_names_the_extra(no_torch):
    proc = optbench(no_torch, "plan", "experiments/quickstart.yaml")
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "model source 'python' needs torch" in lines[0] and "pip install 'optbench[torch]'" in lines[0], lines


def test_a_torch_import_anywhere_is_one_line_naming_the_extra(monkeypatch, capsys):
    """The net under the spec check: a command that reaches torch where it is not installed says which extra."""
    import optbench.cli as cli
    import optbench.commands.env as env_command

    def needs_torch(args):
        import torch  # noqa: F401  (blocked below)

    class NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] == "torch":
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)

    monkeypatch.setattr(env_command, "cmd_env", needs_torch)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [NoTorch(), *sys.meta_path])
    assert cli.main(["env"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["optbench: error: this needs torch, which is not installed: pip install 'optbench[torch]'"], err
