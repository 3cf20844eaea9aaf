"""The built wheel, installed as a user would (not editable), runs plan, run and report from outside the
repository: the package data (default settings, the report template) travels in it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SPEC = """\
name: wheel
model: {source: python, entrypoint: "digits.py:build", kwargs: {epochs: 2, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 64, eval: 128}
variants: {precision: [fp32, int8], batch_size: [1]}
backends: [onnxruntime]
measure: {warmup_s: 0.02, min_iters: 5, min_duration_s: 0.05, rounds: 1, processes: 1}
"""


def _run(cmd: list[str], cwd: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n" \
                                 f"{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_repository(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves no build/ or egg-info in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "results", "reports", "corpus", "build",
                                                               "*.egg-info", "__pycache__", ".pytest_cache"))
    _run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-w",
          str(tmp_path / "dist")], tmp_path)
    (wheel,) = (tmp_path / "dist").glob("optbench-*.whl")
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(tmp_path / "venv")], tmp_path)
    py = tmp_path / "venv" / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp_path)

    work = tmp_path / "work"
    work.mkdir()
    where = _run([str(py), "-c", "import optbench, optbench.spec.defaults as d; print(optbench.__file__); "
                                 "print(d.configs_dir())"], work).stdout.split()
    assert all(str(tmp_path / "venv") in w for w in where), where  # the wheel's copy, not the checkout's
    shutil.copy(ROOT / "experiments" / "models" / "digits.py", work / "digits.py")
    (work / "spec.yaml").write_text(SPEC)
    plan = _run([str(py), "-m", "optbench", "plan", "spec.yaml"], work).stdout
    assert "2 planned" in plan
    _run([str(py), "-m", "optbench", "run", "spec.yaml", "--run-dir", "run", "--no-report"], work)
    _run([str(py), "-m", "optbench", "report", "run"], work)
    html = (work / "run" / "report.html").read_text()
    assert "onnxruntime.int8" in html and "onnxruntime.fp32" in html
