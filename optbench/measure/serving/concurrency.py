"""A concurrency sweep, perf_analyzer style: N clients in closed loop against the serving engine.

Each client sends one request, waits for its answer and sends the next, for ``seconds`` after a short warm-up;
N clients keep N requests in flight. Throughput rises with N while the engine has idle capacity (or batches
the extra requests) and latency rises once it has none: the points make the latency-throughput curve.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class ConcurrencyPoint:
    """One level of the sweep: requests completed per second and their latency (ms) at ``concurrency``, over
    ``seconds`` after the warm-up; ``batch_sizes`` counts the engine's calls per batch size over the whole level,
    warm-up included."""

    concurrency: int
    batching: str
    throughput_items_s: float
    p50_ms: float | None
    p99_ms: float | None
    requests: int
    errors: int
    seconds: float
    batch_sizes: dict[str, int]
    instances: int = 1


def closed_loop(engine: Callable, samples: int, clients: int, seconds: float, warmup_s: float = 0.2,
                clock: Callable[[], float] = time.perf_counter) -> tuple[list[float], int, float]:
    """``clients`` threads calling ``engine(index)`` back to back over the ``samples`` staged samples: (latencies
    in ms of the requests sent after the warm-up and finished before the end, errors, the seconds they span)."""
    start = clock()
    begin, end = start + warmup_s, start + warmup_s + seconds
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients

    def client(c: int) -> None:
        i = c
        while True:
            t0 = clock()
            if t0 >= end:
                return
            try:
                engine(i % samples)
            except Exception:
                errors[c] += 1
            t1 = clock()
            if t0 >= begin and t1 <= end:
                latencies[c].append((t1 - t0) * 1000.0)
            i += clients

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [x for lat in latencies for x in lat], sum(errors), seconds


def sweep(engine: Callable, samples: int, levels: Sequence[int], seconds: float, batching: str = "none",
          warmup_s: float = 0.2, clock: Callable[[], float] = time.perf_counter) -> list[ConcurrencyPoint]:
    """One point per concurrency level; ``engine`` is a Batcher (its ``served`` tally says which sizes ran, its
    ``instances`` how many lanes served)."""
    points = []
    for n in levels:
        engine.reset_counts()
        lat, errors, span = closed_loop(engine, samples, n, seconds, warmup_s, clock)
        arr = np.asarray(lat)
        points.append(ConcurrencyPoint(
            concurrency=n, batching=batching, throughput_items_s=len(lat) / span if span else 0.0,
            p50_ms=float(np.percentile(arr, 50)) if len(arr) else None,
            p99_ms=float(np.percentile(arr, 99)) if len(arr) else None, requests=len(lat), errors=errors,
            seconds=span, batch_sizes={str(k): v for k, v in engine.counts().items()},
            instances=getattr(engine, "instances", 1)))
    return points


def burst_throughput(engine: Any, samples: int, count: int = 256,
                     clock: Callable[[], float] = time.perf_counter) -> float:
    """Items per second when ``count`` requests arrive at once (the engine's capacity with a full queue, as
    offline sees it): the estimate that sizes LoadGen's offline query and starts the peak search."""
    left = [count]
    finished = threading.Event()
    lock = threading.Lock()

    def done(ids: Sequence, _out: Any) -> None:
        with lock:
            left[0] -= len(ids)
            if not left[0]:
                finished.set()

    t0 = clock()
    engine.enqueue([i % samples for i in range(count)], range(count), done)
    finished.wait()
    return count / max(clock() - t0, 1e-9)
