"""Dynamic batching in front of any session: requests of one item each, grouped, padded, split back.

A request waits until ``max_batch`` requests are pending or the oldest has waited ``max_delay_ms``; the group is
padded (by repeating its last request) to the nearest batch size the variant runs — the sizes a static engine was
built for, or any size for a dynamic-shape session — run as one call, and each request gets its own rows of every
output back, padding rows dropped. ``max_batch=1`` is the plain server: one call per request, in arrival order.

The decision when to dispatch is :class:`Policy`, a pure function of the pending count, the oldest arrival and
the time, so it is tested with a fake clock; :class:`Batcher` is its worker thread around a real session.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]
Run = Callable[[Feeds], dict[str, np.ndarray]]
Axes = dict[str, Any]  # name -> batch axis (int), or None (a constant input / an output without items)


@dataclass(frozen=True)
class Policy:
    """When to dispatch and how big: ``max_batch`` requests at most, the oldest waiting ``max_delay_s`` at most,
    padded to the smallest of ``sizes`` that holds them (``sizes`` None: any size runs)."""

    max_batch: int = 1
    max_delay_s: float = 0.0
    sizes: tuple[int, ...] | None = None

    @property
    def cap(self) -> int:
        """The most requests one call can hold."""
        return min(self.max_batch, max(self.sizes)) if self.sizes else self.max_batch

    def size_for(self, n: int) -> int:
        """The batch size a group of ``n`` requests runs at (``n`` itself, or the nearest built size above)."""
        if not self.sizes:
            return n
        return min(s for s in self.sizes if s >= n)

    def ready(self, pending: int, oldest: float, now: float) -> tuple[int, float]:
        """(requests to take now, seconds until it is worth asking again): a full group at once; a partial one
        when its oldest request has waited ``max_delay_s``; nothing while the group may still grow."""
        if pending <= 0:
            return 0, math.inf
        if pending >= self.cap:
            return self.cap, 0.0
        waited = now - oldest
        if waited >= self.max_delay_s:
            return pending, 0.0
        return 0, self.max_delay_s - waited


def stack(requests: Sequence[Feeds], axes: Axes, size: int) -> Feeds:
    """One batch of ``size`` from single-item requests, concatenated along each input's batch axis and padded by
    repeating the last request; inputs without a batch axis (constants) are taken from the first request."""
    rows = list(requests) + [requests[-1]] * (size - len(requests))
    out = {}
    for name, first in requests[0].items():
        axis = axes.get(name, 0)
        out[name] = first if axis is None else np.concatenate([r[name] for r in rows], axis=axis)
    return out


def split(outputs: dict[str, np.ndarray], axes: Axes, n: int) -> list[dict[str, np.ndarray]]:
    """The first ``n`` items of every output, one dict per request, each item keeping a batch axis of 1 (the
    shape an unbatched call returns); padding rows are dropped."""
    parts: list[dict[str, np.ndarray]] = [{} for _ in range(n)]
    for name, arr in outputs.items():
        axis = axes[name]
        for i in range(n):
            index = [slice(None)] * np.ndim(arr)
            index[axis] = slice(i, i + 1)
            parts[i][name] = np.asarray(arr)[tuple(index)]
    return parts


def batching_unavailable(in_axes: Axes, out_axes: Axes) -> str | None:
    """Why requests of this model cannot be grouped into one call (None: they can)."""
    if not any(isinstance(a, int) for a in in_axes.values()):
        return "no input has a batch axis"
    odd = {k: a for k, a in out_axes.items() if not isinstance(a, int) or isinstance(a, bool)}
    if odd:
        return f"output(s) {sorted(odd)} have no batch axis to split a group's results along ({odd})"
    return None


@dataclass
class _Request:
    feeds: Feeds
    arrived: float
    done: Callable[[Any], None]


class Batcher:
    """A worker thread that runs ``run`` on groups of requests by :class:`Policy`.

    ``submit(feeds, done)`` queues one single-item request; ``done`` gets its outputs, or the exception its call
    raised. Calling the batcher (``batcher(feeds)``) submits and waits. ``served`` counts calls per batch size run
    and ``padded`` the padding items; ``reset_counts()`` starts a new tally (one per scenario).
    """

    def __init__(self, run: Run, in_axes: Axes, out_axes: Axes, policy: Policy = Policy(),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        if (policy.max_batch > 1 or policy.size_for(1) > 1) and (why := batching_unavailable(in_axes, out_axes)):
            raise ValueError(f"dynamic batching is not possible: {why}")
        self.run, self.in_axes, self.out_axes, self.policy, self.clock = run, in_axes, out_axes, policy, clock
        self.served: Counter[int] = Counter()
        self.padded = 0
        self.errors = 0
        self._pending: list[_Request] = []
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="optbench-batcher", daemon=True)
        self._thread.start()

    def submit(self, feeds: Feeds, done: Callable[[Any], None]) -> None:
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._pending.append(_Request(feeds, self.clock(), done))
            self._cond.notify()

    def __call__(self, feeds: Feeds) -> dict[str, np.ndarray]:
        fut: Future = Future()
        self.submit(feeds, fut.set_result)
        out = fut.result()
        if isinstance(out, BaseException):
            raise out
        return out

    def reset_counts(self) -> None:
        with self._cond:
            self.served, self.padded, self.errors = Counter(), 0, 0

    def counts(self) -> dict[int, int]:
        with self._cond:
            return dict(sorted(self.served.items()))

    def close(self) -> None:
        """Run what is pending, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join()

    def _next_group(self) -> list[_Request] | None:
        with self._cond:
            while True:
                if not self._pending and self._closed:
                    return None
                oldest = self._pending[0].arrived if self._pending else 0.0
                take, wait = self.policy.ready(len(self._pending), oldest, self.clock())
                if self._closed and self._pending:
                    take = min(len(self._pending), self.policy.cap)
                if take:
                    group, self._pending = self._pending[:take], self._pending[take:]
                    return group
                self._cond.wait(None if math.isinf(wait) else wait)

    def _loop(self) -> None:
        while (group := self._next_group()) is not None:
            self._execute(group)

    def _execute(self, group: list[_Request]) -> None:
        n, size = len(group), self.policy.size_for(len(group))
        try:
            if n == size == 1:
                parts = [self.run(group[0].feeds)]
            else:
                parts = split(self.run(stack([r.feeds for r in group], self.in_axes, size)), self.out_axes, n)
        except Exception as e:  # every request of the group gets the error; the server keeps serving
            with self._cond:
                self.errors += n
            parts = [e] * n
        with self._cond:
            self.served[size] += 1
            self.padded += size - n
        for r, out in zip(group, parts):
            r.done(out)


def supported_sizes(run: Run, item: Feeds, in_axes: Axes, out_axes: Axes,
                    candidates: Sequence[int]) -> tuple[tuple[int, ...], dict[int, str]]:
    """The batch sizes the session runs, found by running each candidate once on copies of ``item`` and checking
    every output holds that many items: (sizes that ran, {size: 'ok' or why not})."""
    seen: dict[int, str] = {}
    for size in sorted(set(candidates)):
        try:
            out = run(stack([item] * size, in_axes, size))
            wrong = {k: np.shape(v)[out_axes[k]] for k, v in out.items() if np.shape(v)[out_axes[k]] != size}
            seen[size] = "ok" if not wrong else f"outputs hold {wrong} items, not {size}"
        except Exception as e:
            seen[size] = f"{type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
    return tuple(s for s, why in seen.items() if why == "ok"), seen
