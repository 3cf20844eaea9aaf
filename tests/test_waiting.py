"""A variant that waits for a node lock another optbench run holds says so, and for whom, in the progress."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_progress_says_what_a_variant_waits_for(tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    (tmp_path / "spec.yaml").write_text(TINY)
    room = open(locks / "room.lock", "a+")  # noqa: SIM115
    fcntl.flock(room, fcntl.LOCK_EX)  # as another run's CPU timing window would
    (locks / f"holder-{os.getpid()}").write_text(f"optbench run other-run, its variant (pid {os.getpid()})")
    env = {**os.environ, "OPTBENCH_LOCK_DIR": str(locks)}
    said = "waiting for a timing window to end (room): held by optbench run other-run"
    errors = tmp_path / "stderr.txt"
    with open(errors, "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "optbench", "run", str(tmp_path / "spec.yaml"), "--run-dir",
                                 str(tmp_path / "run"), "--no-report"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                stderr=err_file, text=True)
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
        while time.monotonic() < deadline and proc.poll() is None and said not in errors.read_text():
            time.sleep(0.1)  # until the sweep has read the note and said it
    finally:
        fcntl.flock(room, fcntl.LOCK_UN)
        room.close()
    proc.wait(timeout=300)
    err = errors.read_text()
    assert proc.returncode == 0, err[-2000:]
    assert said in err, err[-2000:]
    assert not list((tmp_path / "run").glob("**/*.waiting"))  # the note goes with the wait


class _FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class _WorkerWaitingThenDone:
    """A worker process as the supervisor sees it, on a fake clock: it waits for another run's timing window from
    clock second 1 to 31 (its waiting note says so), then works 9 s more and exits 0 at second 40."""

    def __init__(self, clock: _FakeClock, note: Path) -> None:
        self.clock, self.note, self.exitcode, self.pid = clock, note, None, os.getpid()

    def join(self, timeout: float) -> None:
        self.clock.t += timeout
        self.note.write_text("held by optbench run other-run" if 1 <= self.clock.t < 31 else "")
        if self.clock.t >= 40:
            self.exitcode = 0

    def kill(self) -> None:
        raise AssertionError("killed a worker that was within its time limit")


def test_waiting_for_another_runs_timing_window_does_not_count_against_the_time_limit(tmp_path, monkeypatch):
    """A 20 s limit and a worker that waits 30 s for another run's window, then works 9 s more: not timed out
    (the wait does not count), the wait reported as it began and ended. The worker writing its waiting note while
    it waits on a real lock is the test above; this one is the supervisor's accounting, on a fake clock."""
    import optbench.clock as clock_module
    from optbench.run import supervise

    clock = _FakeClock()
    monkeypatch.setattr(clock_module, "monotonic", clock)
    note, heard = tmp_path / "v.waiting", []
    note.write_text("")
    timed_out, killed_for, waited = supervise._join_watching(_WorkerWaitingThenDone(clock, note), 20.0, None,
                                                             waiting=note, notify=heard.append)
    assert (timed_out, killed_for) == (False, None)
    assert 29.0 <= waited <= 31.0, waited
    assert heard == ["held by optbench run other-run", ""]


def test_a_worker_past_its_limit_without_waiting_times_out(tmp_path, monkeypatch):
    """The same worker without the wait's discount (no waiting note): past 20 s it is timed out."""
    import optbench.clock as clock_module
    from optbench.run import supervise

    clock = _FakeClock()
    monkeypatch.setattr(clock_module, "monotonic", clock)
    worker = _WorkerWaitingThenDone(clock, tmp_path / "unread.waiting")
    timed_out, _, waited = supervise._join_watching(worker, 20.0, None)
    assert timed_out and waited == 0.0 and clock.t < 40
