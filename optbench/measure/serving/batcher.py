"""Dynamic batching in front of execution lanes: requests of one item each, grouped, padded, run, answered in bulk.

A request is the index of a serving sample; the samples' inputs are staged once, before anything is timed, in
each lane (on its device where the backend allows, see :class:`optbench.backends.base.Lane`). Requests arrive in
chunks — LoadGen's issue thread hands over the lists it was given and does nothing per sample — and wait in one
queue that every lane takes its groups from (Triton's dynamic batcher in front of an instance group): a free lane
takes ``max_batch`` requests at most, or fewer once the oldest has waited ``max_delay_ms``, pads the group (by
repeating its last index) to the nearest batch size the variant runs, runs it, and hands each chunk's share of
the outputs back with one call (LoadGen's ``QuerySamplesComplete`` with a list). ``max_batch=1`` is the plain
server: one call per request, in arrival order.

Every lane runs each batch size the policy can form a few times before it serves (warm-up: compilation, CUDA
graph capture, cuDNN's plans), and keeps the warm time of each; a batch that later takes far longer than its
size's warm time, or a compile the runtime counts while serving, is a stall, listed for the run's reasons.

The decision when to dispatch is :class:`Policy`, a pure function of the pending count, the oldest arrival and
the time, so it is tested with a fake clock; :class:`Batcher` is the queue and the lanes' threads.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

Feeds = dict[str, np.ndarray]
Run = Callable[[Feeds], dict[str, np.ndarray]]
Axes = dict[str, Any]  # name -> batch axis (int), or None (a constant input / an output without items)
Done = Callable[[Sequence, Any], None]  # (the chunk's ids in this group, their outputs or the exception)

WARM_CALLS = 3        # calls per batch size while a lane warms: the first builds, the later ones give the warm time
STALL_FACTOR = 10.0   # a batch over this many times its size's warm time ...
STALL_MIN_MS = 25.0   # ... and over the warm time by this much is a stall
STALLS_KEPT = 10      # stalls described one by one per run; the rest are counted


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

    def formed(self) -> tuple[int, ...]:
        """Every batch size a group can run at: what a lane warms before it serves."""
        return tuple(sorted({self.size_for(n) for n in range(1, self.cap + 1)}))

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


def rows(outputs: dict[str, np.ndarray], axes: Axes, start: int, stop: int) -> dict[str, np.ndarray]:
    """Items ``start:stop`` of every output, along each output's batch axis (views, no copy)."""
    out = {}
    for name, arr in outputs.items():
        arr = np.asarray(arr)
        out[name] = arr[(slice(None),) * axes[name] + (slice(start, stop),)]
    return out


def batching_unavailable(in_axes: Axes, out_axes: Axes) -> str | None:
    """Why requests of this model cannot be grouped into one call (None: they can)."""
    if not any(isinstance(a, int) for a in in_axes.values()):
        return "no input has a batch axis"
    odd = {k: a for k, a in out_axes.items() if not isinstance(a, int) or isinstance(a, bool)}
    if odd:
        return f"output(s) {sorted(odd)} have no batch axis to split a group's results along ({odd})"
    return None


class _Chunk:
    """Requests handed over together (one LoadGen issue, one client's request): taken from ``start`` on."""

    __slots__ = ("ids", "index", "done", "arrived", "start")

    def __init__(self, ids: Sequence, index: Sequence[int], done: Done, arrived: float) -> None:
        self.ids, self.index, self.done, self.arrived, self.start = ids, index, done, arrived, 0


class Batcher:
    """One request queue, ``instances`` lanes each on a thread of its own, and the :class:`Policy` they take
    groups by.

    ``make_lane(i)`` makes lane ``i`` (on that lane's thread; see :meth:`optbench.backends.base.Session.lane`);
    the constructor returns once every lane has warmed every size it may run, or raises what a lane raised.
    ``enqueue(index, ids, done)`` queues a chunk of requests (pool indices) in O(1): ``done(ids_part, outputs)``
    is called once per group with the chunk's requests in it, their outputs (each output cut to their items) or
    the exception their call raised. ``submit(index, done)`` queues one request; calling the batcher
    (``batcher(index)``) submits one and waits for its outputs. ``served`` counts calls per batch size, ``padded``
    the padding items; ``reset_counts()`` starts a new tally (one per scenario) and ``stalls()`` lists the batches
    of the tally that stalled.
    """

    def __init__(self, make_lane: Callable[[int], Any], out_axes: Axes, policy: Policy = Policy(),
                 instances: int = 1, rename: Callable[[dict], dict] | None = None,
                 clock: Callable[[], float] = time.perf_counter, in_axes: Axes | None = None) -> None:
        if in_axes is not None and (policy.max_batch > 1 or policy.size_for(1) > 1) and \
                (why := batching_unavailable(in_axes, out_axes)):
            raise ValueError(f"dynamic batching is not possible: {why}")
        self.out_axes, self.policy, self.instances, self.clock = out_axes, policy, instances, clock
        self.rename = rename or (lambda out: out)
        self.served: Counter[int] = Counter()
        self.padded = self.errors = 0
        self.batch_ms: dict[int, list[float]] = {}   # size -> [calls, total ms, longest ms]
        self._stalls: list[str] = []
        self._stall_count = 0
        self._compiles_at_reset: int | None = None
        self._chunks: deque[_Chunk] = deque()
        self._pending = 0
        self.idle = 0  # lanes waiting for requests (or for a group to fill)
        self._cond = threading.Condition()
        self._closed = False
        self.lanes: list[Any] = [None] * instances
        self.warm_ms: list[dict[int, float]] = [{} for _ in range(instances)]
        self._failed: list[BaseException] = []
        # lanes of one process warm one after another: two threads compiling one torch.compile'd module for the same
        # new shape at once fail in dynamo ("FX to symbolically trace a dynamo-optimized function"); a lane in a
        # process of its own warms beside the others
        self._warming = threading.Lock()
        self._ready = threading.Barrier(instances + 1)
        self._threads = [threading.Thread(target=self._lane_main, args=(i, make_lane), name=f"optbench-lane-{i}",
                                          daemon=True) for i in range(instances)]
        for t in self._threads:
            t.start()
        self._ready.wait()
        if self._failed:
            self.close()
            raise self._failed[0]
        self._compiles_at_reset = self._compiles()

    # ---------------------------------------------------------------- the request side (any thread)
    def enqueue(self, index: Sequence[int], ids: Sequence, done: Done) -> None:
        """Queue the requests ``index`` (pool indices) with their ``ids``: one lock, one append, a wake-up where a
        lane has something new to do."""
        chunk = _Chunk(ids, index, done, self.clock())
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._chunks.append(chunk)
            before = self._pending
            self._pending += len(index)
            # a lane waits without end only while nothing is pending, and otherwise wakes at the oldest request's
            # delay by itself: woken here only when the queue stops being empty or a group is full
            if not before or (before < self.policy.cap <= self._pending):
                self._cond.notify()

    def submit(self, index: int, done: Callable[[Any], None]) -> None:
        self.enqueue((index,), (None,), lambda _ids, out: done(out))

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        fut: Future = Future()
        self.submit(index, fut.set_result)
        out = fut.result()
        if isinstance(out, BaseException):
            raise out
        return out

    # ---------------------------------------------------------------- tallies
    def reset_counts(self) -> None:
        with self._cond:
            self.served, self.padded, self.errors, self.batch_ms = Counter(), 0, 0, {}
            self._stalls, self._stall_count = [], 0
        self._compiles_at_reset = self._compiles()

    def counts(self) -> dict[int, int]:
        with self._cond:
            return dict(sorted(self.served.items()))

    def stalls(self) -> list[str]:
        """The tally's stalls, in words: batches far over their warm time, graphs compiled while serving."""
        with self._cond:
            out = list(self._stalls)
            if self._stall_count > len(out):
                out.append(f"{self._stall_count - len(out)} more stalled batch(es)")
        now, then = self._compiles(), self._compiles_at_reset
        if now is not None and then is not None and now > then:
            out.append(f"recompiled while serving: the runtime compiled {now - then} new graph(s) during the run")
        return out

    def batch_times(self) -> dict[str, dict[str, float]]:
        """Per batch size run: calls, mean and longest call (ms, the lane's whole call: gather, model, outputs)."""
        with self._cond:
            return {str(s): {"calls": int(c), "mean_ms": round(t / c, 4), "max_ms": round(m, 4)}
                    for s, (c, t, m) in sorted(self.batch_ms.items())}

    def describe(self) -> dict[str, Any]:
        """The lanes: how many, how they run and stage, each one's warm time per batch size (ms)."""
        first = self.lanes[0].describe() if self.lanes and self.lanes[0] is not None else {}
        return {"instances": self.instances, **first,
                "warm_ms": [{str(s): round(ms, 4) for s, ms in sorted(w.items())} for w in self.warm_ms]}

    def _compiles(self) -> int | None:
        """Graphs compiled so far: one process's count where the lanes share it, the sum of the lanes' processes'
        where each lane has one (``own_process``)."""
        lanes = [lane for lane in self.lanes if lane is not None]
        if not lanes:
            return None
        if not getattr(lanes[0], "own_process", False):
            return lanes[0].compiles()
        counts = [lane.compiles() for lane in lanes]
        return None if any(c is None for c in counts) else sum(counts)

    def close(self) -> None:
        """Run what is pending, then stop the lanes and release them."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()

    # ---------------------------------------------------------------- the lanes' side
    def _lane_main(self, i: int, make_lane: Callable[[int], Any]) -> None:
        try:
            lane = self.lanes[i] = make_lane(i)
            with nullcontext() if getattr(lane, "own_process", False) else self._warming:
                for size in self.policy.formed():
                    index = np.zeros(size, dtype=np.int64)
                    times = []
                    for _ in range(WARM_CALLS):
                        t0 = self.clock()
                        lane.run(index)
                        times.append((self.clock() - t0) * 1000.0)
                    self.warm_ms[i][size] = min(times[1:])
        except BaseException as e:  # the constructor raises it
            self._failed.append(e)
            self._ready.wait()
            if self.lanes[i] is not None:
                self.lanes[i].close()
            return
        self._ready.wait()
        try:
            while (group := self._next_group()) is not None:
                self._execute(i, lane, group)
        finally:
            lane.close()

    def _next_group(self) -> list[tuple[_Chunk, int, int]] | None:
        with self._cond:
            while True:
                if self._failed or (not self._pending and self._closed):
                    return None
                oldest = self._chunks[0].arrived if self._chunks else 0.0
                take, wait = self.policy.ready(self._pending, oldest, self.clock())
                if self._closed and self._pending:
                    take = min(self._pending, self.policy.cap)
                if take:
                    group = self._take(take)
                    if self._pending:  # what is left is another lane's to look at
                        self._cond.notify()
                    return group
                self.idle += 1
                self._cond.wait(None if math.isinf(wait) else wait)
                self.idle -= 1

    def _take(self, n: int) -> list[tuple[_Chunk, int, int]]:
        """``n`` requests from the front of the queue, as (chunk, start, stop) parts (called holding the lock)."""
        parts = []
        self._pending -= n
        while n:
            c = self._chunks[0]
            k = min(n, len(c.index) - c.start)
            parts.append((c, c.start, c.start + k))
            c.start += k
            n -= k
            if c.start == len(c.index):
                self._chunks.popleft()
        return parts

    def _execute(self, lane_no: int, lane: Any, parts: list[tuple[_Chunk, int, int]]) -> None:
        n = sum(b - a for _, a, b in parts)
        size = self.policy.size_for(n)
        index = np.empty(size, dtype=np.int64)
        at = 0
        for c, a, b in parts:
            index[at:at + b - a] = c.index[a:b]
            at += b - a
        index[n:] = index[n - 1]
        t0 = self.clock()
        try:
            out: Any = self.rename(lane.run(index))
        except Exception as e:  # every request of the group gets the error; the server keeps serving
            out = e
        ms = (self.clock() - t0) * 1000.0
        with self._cond:
            self.served[size] += 1
            self.padded += size - n
            if isinstance(out, Exception):
                self.errors += n
            stat = self.batch_ms.setdefault(size, [0, 0.0, 0.0])
            stat[0], stat[1], stat[2] = stat[0] + 1, stat[1] + ms, max(stat[2], ms)
            warm = self.warm_ms[lane_no].get(size)
            if warm is not None and ms > max(STALL_FACTOR * warm, warm + STALL_MIN_MS):
                self._stall_count += 1
                if len(self._stalls) < STALLS_KEPT:
                    self._stalls.append(f"a batch of {size} on lane {lane_no} took {ms:.1f} ms, {ms / warm:.0f}x its "
                                        f"warm time ({warm:.2f} ms)")
        at = 0
        for done, ids in _answers(parts):  # one call per callback: LoadGen's chunks share one, so one per group
            try:
                mine = out if isinstance(out, Exception) else rows(out, self.out_axes, at, at + len(ids))
            except Exception as e:  # outputs that cannot be cut (an output the model's axes do not name)
                mine = e
            done(ids, mine)
            at += len(ids)


def _answers(parts: list[tuple[_Chunk, int, int]]) -> list[tuple[Done, Sequence]]:
    """A group's parts as (callback, ids) in batch order, consecutive parts of one callback joined."""
    out: list[tuple[Done, Sequence]] = []
    for c, a, b in parts:
        if out and out[-1][0] is c.done:
            out[-1][1].extend(c.ids[a:b])
        else:
            out.append((c.done, c.ids[a:b] if len(parts) == 1 else list(c.ids[a:b])))
    return out


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


def stage(samples: Sequence[Feeds], axes: Axes) -> Feeds:
    """The serving samples (one item each) as one pool: every input stacked along its batch axis, a constant input
    taken from the first sample; request ``i`` is item ``i`` of the pool."""
    return stack(samples, axes, len(samples))
