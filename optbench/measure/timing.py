"""The timing harness: the only code in optbench that reads a clock.

A backend session exposes ``prepare(feeds)``, ``run(bound)`` and ``synchronize()``; the
harness warms up, then samples until it has both ``min_iters`` iterations and
``min_duration_s`` seconds (capped by ``max_iters``). Each sample is one call followed by
``synchronize()``, so asynchronous devices are timed to completion.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from optbench.measure.stats import Measurement

Clock = Callable[[], float]
T = TypeVar("T")


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
