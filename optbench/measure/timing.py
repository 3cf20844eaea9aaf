"""The timing harness: the only code in optbench that reads a clock.

A backend session exposes ``prepare(feeds)``, ``run(bound)`` and ``synchronize()``; the
harness warms up, then samples until it has both ``min_iters`` iterations and
``min_duration_s`` seconds (capped by ``max_iters``). Each sample is one call followed by
``synchronize()``, so asynchronous devices are timed to completion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, TypeVar

from optbench.measure.stats import Measurement
from optbench.row import as_warning, warning

Clock = Callable[[], float]
T = TypeVar("T")
MIN_ROUND_ITERS = 5     # iterations of one round at least, whatever min_iters / rounds gives
ROUND_WARMUP_S = 0.05   # warm-up of rounds after the first (at most warmup_s)


def measure_session(session: Any, feeds: dict, batch_size: int, settings: Any,
                    clock: Clock = time.perf_counter) -> tuple[Measurement, Measurement | None]:
    """Host-clock samples of call + synchronize, and device-time samples where the session offers events."""
    bound = session.prepare(feeds)
    make_events = getattr(session, "device_events", None)
    device: list[float] = []
    start = clock()
    while True:  # warm-up: at least one call, then until warmup_s has passed
        session.run(bound)
        session.synchronize()
        if clock() - start >= settings.warmup_s:
            break
    samples: list[float] = []
    begin = clock()
    while len(samples) < settings.max_iters:
        events = make_events() if make_events else None
        t0 = clock()
        if events:
            events[0].record()
        session.run(bound)
        if events:
            events[1].record()
        session.synchronize()
        t1 = clock()
        samples.append((t1 - t0) * 1000.0)
        if events:
            device.append(events[0].elapsed_time(events[1]))
        if len(samples) >= settings.min_iters and t1 - begin >= settings.min_duration_s:
            break
    used = {k: getattr(settings, k) for k in ("warmup_s", "min_iters", "min_duration_s", "max_iters")}
    host = Measurement(tuple(samples), batch_size, used, cv_warn=settings.cv_warn)
    return host, (Measurement(tuple(device), batch_size, used, cv_warn=settings.cv_warn) if device else None)


def timed(fn: Callable[[], T], clock: Clock = time.perf_counter) -> tuple[T, float]:
    """Run ``fn`` once; return its result and the seconds it took (build/export time)."""
    t0 = clock()
    out = fn()
    return out, clock() - t0


def measure_rounds(session: Any, feeds: dict, batch_size: int, settings: Any, clock: Clock = time.perf_counter,
                   pause: Callable[[float], None] = time.sleep, probe: Callable[[], Any] | None = None,
                   speed_probe: Callable[[], float] | None = None,
                   count: int | None = None, wall: Callable[[], float] = time.time,
                   turns: Any = None) -> tuple[Measurement, Measurement | None, dict]:
    """``settings.rounds`` timing windows on one built session, each after a pause and a fresh warm-up.

    The iterations and seconds a spec asks for are shared among the rounds (so rounds cost no extra timing),
    at least ``MIN_ROUND_ITERS`` each. Rounds run in this worker, one after another: a fresh process per round
    would pay the imports (and torch.compile) again for every round, and resume stays per variant. What rounds
    in one process cannot see (another process's load, a hypervisor's steal) is read around each window by
    ``probe``, and the machine's own speed by ``speed_probe`` (see :mod:`optbench.measure.contention`); both are
    returned beside the rounds: ``{"rounds": [{median_ms, probe_us, ...}], "contention": {...} over all rounds,
    "busy": reason or None}``. ``count`` runs only that many of the rounds (their budgets unchanged): the share of
    one of ``measure.processes`` worker processes. ``turns`` (:class:`optbench.measure.turns.Turns`): this process
    takes turns with another, round by round (paired re-timing); the machine's load is then read over this
    process's rounds only, since the other process runs between them."""
    import math

    import optbench.measure.contention as contention

    n = max(1, int(getattr(settings, "rounds", 1)))
    per_round = SimpleNamespace(
        warmup_s=settings.warmup_s, min_iters=max(MIN_ROUND_ITERS, math.ceil(settings.min_iters / n)),
        min_duration_s=settings.min_duration_s / n, max_iters=max(1, settings.max_iters // n), cv_warn=settings.cv_warn)
    snap = probe or contention.snapshot
    speed_probe = speed_probe or contention.speed_probe
    host_rounds, dev_rounds, info = [], [], []
    if turns is not None:
        turns.start()
    first = snap()
    for i in range(min(n, count) if count else n):
        if i:
            pause(getattr(settings, "round_pause_s", 0.0))
            per_round.warmup_s = min(settings.warmup_s, ROUND_WARMUP_S)  # caches are warm: re-enter steady state
        if turns is not None:
            turns.before()
        before, speed = snap(), speed_probe()
        opened = wall()
        host, dev = measure_session(session, feeds, batch_size, per_round, clock)
        closed = wall()
        speed, after = max(speed, speed_probe()), snap()
        if turns is not None:
            turns.after()
        c = contention.between(before, after) if before is not None and after is not None else {}
        host_rounds.append(host.samples_ms)
        if dev is not None:
            dev_rounds.append(dev.samples_ms)
        info.append({"median_ms": host.percentile(50), "iterations": len(host.samples_ms), "probe_us": speed,
                     "contention": c, "window": [opened, closed]})
    # busy is judged over all rounds together: a window of a few tens of ms is a handful of clock ticks
    if turns is not None:
        turns.end()
        whole = contention.pooled([r["contention"] for r in info])
    else:
        whole = contention.between(first, after) if first is not None and after is not None else {}
    used = {k: getattr(settings, k, None) for k in ("warmup_s", "min_iters", "min_duration_s", "max_iters", "rounds",
                                                     "round_pause_s")}
    spread_warn = getattr(settings, "spread_warn", 0.05)
    host = Measurement(tuple(x for r in host_rounds for x in r), batch_size, used, settings.cv_warn,
                       tuple(host_rounds), spread_warn)
    dev = (Measurement(tuple(x for r in dev_rounds for x in r), batch_size, used, settings.cv_warn, tuple(dev_rounds),
                       spread_warn) if dev_rounds else None)
    return host, dev, {"rounds": info, "contention": whole, "busy": contention.busy_reason(whole) if whole else None}


def round_shares(rounds: int, processes: int) -> list[int]:
    """How many rounds each worker process runs (at least one each; never more processes than rounds)."""
    p = max(1, min(processes, rounds))
    return [rounds // p + (1 if i < rounds % p else 0) for i in range(p)]


def _split(samples: list[float], counts: list[int]) -> list[tuple[float, ...]]:
    out, i = [], 0
    for n in counts:
        out.append(tuple(samples[i:i + n]))
        i += n
    return out


def merge_processes(first: dict, others: list[dict], batch_size: int, settings: Any) -> dict:
    """One row's timing from the rounds of several worker processes: samples and rounds pooled (each round keeps
    the process it ran in), statistics and warnings recomputed over all of them."""
    rows = [first, *others]
    info, host_rounds, dev_rounds = [], [], []
    for p, r in enumerate(rows):
        counts = [int(x["iterations"]) for x in r.get("rounds") or []]
        host_rounds += _split(list(r.get("samples_ms") or []), counts)
        if r.get("gpu_samples_ms"):
            dev_rounds += _split(list(r["gpu_samples_ms"]), counts)
        info += [{**x, "process": p} for x in r.get("rounds") or []]
    spread_warn = getattr(settings, "spread_warn", 0.05)
    host = Measurement(tuple(x for rr in host_rounds for x in rr), batch_size, {}, settings.cv_warn,
                       tuple(host_rounds), spread_warn)
    out = dict(first)
    out["warnings"] = [w for w in map(as_warning, first.get("warnings") or [])
                       if w["code"] not in ("unstable", "noisy", "busy")] + list(host.warnings)
    busy = next((r.get("busy") for r in rows if r.get("busy")), None)
    if busy:
        out["warnings"].append(warning("busy", "machine busy during timing: " + busy))
    out.update(host.summary())
    out.update(rounds=info, probe_us_rounds=[x["probe_us"] for x in info], busy=busy,
               contention={**(first.get("contention") or {}), "processes": [r.get("contention") for r in rows]},
               throughput_items_s=host.throughput, iterations=len(host.samples_ms), samples_ms=list(host.samples_ms),
               timing_processes=len(rows),
               overlapped_windows=[w for r in rows for w in (r.get("overlapped_windows") or [])],
               timing_windows=[r["timing_window"] for r in rows if r.get("timing_window")])
    if dev_rounds and len(dev_rounds) == len(host_rounds):
        dev = Measurement(tuple(x for rr in dev_rounds for x in rr), batch_size, {}, settings.cv_warn,
                          tuple(dev_rounds), spread_warn)
        out.update(dev.summary("gpu_ms"), gpu_samples_ms=list(dev.samples_ms))
    return out
