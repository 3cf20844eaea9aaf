"""A variant that waits for a node lock another optbench run holds says so, and for whom, in the progress."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def test_progress_says_what_a_variant_waits_for(tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    (tmp_path / "spec.yaml").write_text(TINY)
    room = open(locks / "room.lock", "a+")  # noqa: SIM115
    fcntl.flock(room, fcntl.LOCK_EX)  # as another run's CPU timing window would
    (locks / f"holder-{os.getpid()}").write_text(f"optbench run other-run, its variant (pid {os.getpid()})")
    env = {**os.environ, "OPTBENCH_LOCK_DIR": str(locks)}
    proc = subprocess.Popen([sys.executable, "-m", "optbench", "run", str(tmp_path / "spec.yaml"), "--run-dir",
                             str(tmp_path / "run"), "--no-report"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        waiting = None
        while time.monotonic() < deadline and proc.poll() is None:
            found = list((tmp_path / "run").glob("**/*.waiting"))
            if found and found[0].read_text():
                waiting = found[0].read_text()
                break
            time.sleep(0.2)
        assert waiting and "held by optbench run other-run" in waiting, waiting
        time.sleep(0.5)  # the sweep polls the note
    finally:
        fcntl.flock(room, fcntl.LOCK_UN)
        room.close()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert "waiting for a timing window to end (room): held by optbench run other-run" in err, err[-2000:]
    assert not list((tmp_path / "run").glob("**/*.waiting"))  # the note goes with the wait
