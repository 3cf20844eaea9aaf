"""Two real processes taking turns through optbench.measure.turns: rounds in the drawn order, neither timing while
the other builds, both ending together, and a pair whose other process failed stops instead of waiting forever."""

from __future__ import annotations

import multiprocessing as mp
import time
from pathlib import Path

import numpy as np

from optbench.measure.paired import schedule
from optbench.measure.turns import Turns, abort, make_folder


def _side(folder: str, me: str, order: list[str], build_s: float, log: str) -> None:
    time.sleep(build_s)  # building: the other side must not start timing meanwhile
    turns = Turns(folder, me, order)
    turns.start()
    with open(log, "a") as f:
        for _ in range(turns.rounds):
            turns.before()
            f.write(f"{me} start {time.monotonic()}\n")
            f.flush()
            time.sleep(0.01)  # the round
            f.write(f"{me} end {time.monotonic()}\n")
            f.flush()
            turns.after()
        turns.end()
        f.write(f"{me} done {time.monotonic()}\n")
    turns.close()


def _run(tmp_path: Path, order: list[str], builds: dict[str, float]) -> list[tuple[str, str, float]]:
    folder = make_folder(tmp_path / "pair")
    log = tmp_path / "log.txt"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_side, args=(str(folder), side, order, builds[side], str(log)))
             for side in ("baseline", "candidate")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    return sorted(((w[0], w[1], float(w[2])) for w in (line.split() for line in log.read_text().splitlines())),
                  key=lambda e: e[2])


def test_rounds_run_in_the_drawn_order_one_at_a_time(tmp_path):
    order = schedule(5, np.random.default_rng(3))
    events = _run(tmp_path, order, {"baseline": 0.0, "candidate": 0.5})
    rounds = [e for e in events if e[1] in ("start", "end")]
    assert [e[0] for e in rounds if e[1] == "start"] == order
    assert all(a[0] == b[0] and (a[1], b[1]) == ("start", "end") for a, b in zip(rounds[::2], rounds[1::2]))
    done = [e[2] for e in events if e[1] == "done"]
    assert min(done) > max(e[2] for e in rounds)  # neither goes on before the last round of both is over


def test_a_side_waits_for_the_slower_builder_before_its_first_round(tmp_path):
    t0 = time.monotonic()
    events = _run(tmp_path, ["baseline", "candidate"] * 2, {"baseline": 0.0, "candidate": 1.0})
    first = min(e[2] for e in events if e[1] == "start")
    assert first - t0 >= 1.0  # the baseline, built at once, waited for the candidate's build


def _lonely(folder: str, out: str) -> None:
    turns = Turns(folder, "baseline", ["baseline", "candidate"])
    try:
        turns.start()
    except RuntimeError as e:
        Path(out).write_text(str(e))


def test_a_side_whose_partner_failed_stops_with_the_reason(tmp_path):
    folder = make_folder(tmp_path / "pair")
    out = tmp_path / "why.txt"
    p = mp.get_context("spawn").Process(target=_lonely, args=(str(folder), str(out)))
    p.start()
    abort(folder, "the candidate's process failed: ImportError: no runtime")
    p.join(30)
    assert p.exitcode == 0
    assert out.read_text() == ("the other side's re-timing process stopped: the candidate's process failed: "
                               "ImportError: no runtime")
