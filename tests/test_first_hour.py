"""What a newcomer meets in the first hour: a build that times nothing waits for no timing window, lock messages
name who holds the lock."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optbench.measure.exclusive import Exclusive

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "experiments" / "models" / "digits.onnx"


@pytest.mark.slow  # a worker pool's start: ~25 s on a shared 2-core machine
def test_build_takes_no_timing_lock(tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    room = open(locks / "room.lock", "a+")  # noqa: SIM115
    fcntl.flock(room, fcntl.LOCK_EX)  # another run's CPU timing window, held for as long as the build runs
    try:
        proc = subprocess.run([sys.executable, "-m", "optbench", "build", str(MODEL), "--precision", "fp32",
                               "--batch", "1", "--run-dir", str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "OPTBENCH_LOCK_DIR": str(locks)}, timeout=240)
    finally:
        fcntl.flock(room, fcntl.LOCK_UN)
        room.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["built"], rows
    assert "waiting for" not in proc.stderr


def test_lock_holders_name_someone(tmp_path):
    other = os.getppid()  # a live process other than this one
    (tmp_path / f"holder-{other}").write_text("")  # a note another process has opened and not written yet
    assert Exclusive(root=tmp_path).holders() == []
    (tmp_path / f"holder-{other}").write_text("optbench run other-run, its variant (pid 1)")
    assert Exclusive(root=tmp_path).holders() == ["optbench run other-run, its variant (pid 1)"]


def test_a_lock_note_is_written_whole(tmp_path):
    excl = Exclusive(root=tmp_path, label="optbench run mine, v")
    with open(tmp_path / "gate.lock", "a+") as f:
        excl._lock(f, fcntl.LOCK_EX)
    assert (tmp_path / f"holder-{os.getpid()}").read_text() == f"optbench run mine, v (pid {os.getpid()})"
    assert not list(tmp_path.glob(".holder-*"))
