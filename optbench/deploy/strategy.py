"""The deploy search's sequence of candidates, decided from outcomes alone (no clock, no randomness), so a resumed
search replays what it recorded and goes on where it stopped.

0. **given**: the spec's own serving configuration on each passing variant, where it sets one (what the answer
   is compared with).
1. **coarse**: every passing variant × lanes × max batch × size rule × CUDA graphs (on only where the variant's
   lanes capture graphs), at the middle queue delay of the grid (no delay without batching), smallest first.
2. **prune**: a configuration another beats on peak QPS by more than the peak search's own tolerance while using
   no more memory (and, for the energy objective, no more energy per item) is dominated: it is not measured
   further. A configuration is not measured at all where a smaller one of its variant (no more lanes, no larger
   batch, the same size rule) ran out of memory or over ``--memory-gb``: it would not fit either.
3. **delay**: for each configuration left that batches, a bisection on the grid's queue delays for the highest
   peak QPS (the peak rises with the delay while fuller batches pay for the wait, and falls once the wait eats the
   bound): the middle delay and its upper neighbour are compared, and the half holding the better one is kept.

Steps stop at the trial limit; the driver also stops them at its time budget.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace

from optbench.deploy.space import Config, Grid, coarse


@dataclass(frozen=True)
class Outcome:
    status: str                   # as CandidateRow.status
    peak_qps: float | None = None
    memory_bytes: int | None = None
    j_per_item: float | None = None


@dataclass(frozen=True)
class Step:
    phase: str
    candidates: list[Config]


Outcomes = dict[Config, Outcome]
Search = Generator[Step, Outcomes, None]
NO_FIT = ("oom", "over-memory")


def blocked_by(c: Config, seen: Outcomes) -> Config | None:
    """A smaller configuration of ``c``'s variant that did not fit (out of memory, or over the memory bound): ``c``
    would not fit either. None where nothing says so."""
    for d, o in seen.items():
        if o.status in NO_FIT and d != c and d.variant == c.variant and d.sizes == c.sizes and \
                d.instances <= c.instances and d.max_batch <= c.max_batch and d.cuda_graphs <= c.cuda_graphs:
            return d
    return None


def dominated(c: Config, seen: Outcomes, tolerance: float, energy: bool = False) -> Config | None:
    """A measured configuration that beats ``c`` on peak QPS by more than ``tolerance`` (relative) with no more
    memory (and no more J per item where ``energy``); None where none does."""
    mine = seen.get(c)
    if mine is None or mine.status != "measured":
        return None
    q = mine.peak_qps or 0.0
    for d, o in seen.items():
        if d == c or o.status != "measured" or (o.peak_qps or 0.0) <= q * (1 + tolerance) or o.peak_qps == 0:
            continue
        if mine.memory_bytes is not None and (o.memory_bytes is None or o.memory_bytes > mine.memory_bytes):
            continue
        if energy and mine.j_per_item is not None and (o.j_per_item is None or o.j_per_item > mine.j_per_item):
            continue
        return d
    return None


def search(variants: list[str], grid: Grid, trials: int, tolerance: float, energy: bool = False,
           given: list[Config] = (), captures: frozenset[str] = frozenset()) -> Search:
    """The steps; the caller sends each step's outcomes back (a candidate blocked by :func:`blocked_by` comes back
    ``skipped`` and costs no trial). ``given``: configurations measured first whatever the grid (the spec's own
    ``serving:`` settings, what the answer is compared with); they take part in the pruning as any other.
    ``captures``: the variants whose lanes can capture CUDA graphs (:func:`optbench.deploy.space.coarse`)."""
    seen: Outcomes = {}
    budget = [trials]

    def run(phase: str, cands: list[Config]):
        cands = [c for c in cands if c not in seen][: budget[0]]
        if not cands:
            return
        got = yield Step(phase, cands)
        budget[0] -= sum(1 for c in cands if got.get(c) is not None and got[c].status != "skipped")
        seen.update(got)

    if given:
        yield from run("given", list(dict.fromkeys(given)))
    yield from run("coarse", coarse(variants, grid, captures))
    delays = sorted(grid.delays_ms)
    if len(delays) < 2:
        return
    alive = [c for c in seen if c.max_batch > 1 and seen[c].status == "measured"
             and dominated(c, seen, tolerance, energy) is None]
    # each surviving configuration's bracket of delay indices; all advance together, one step per round
    brackets = {c.shape: [0, len(delays) - 1] for c in alive}
    start = {c.shape: c for c in alive}

    def at(shape: tuple, i: int) -> Config:
        return replace(start[shape], max_delay_ms=delays[i])

    def peak(shape: tuple, i: int) -> float:
        o = seen.get(at(shape, i))
        return (o.peak_qps or 0.0) if o is not None and o.status == "measured" else -1.0

    while brackets:
        wanted = []
        for shape, (lo, hi) in brackets.items():
            mid = (lo + hi) // 2
            wanted += [at(shape, mid), at(shape, mid + 1)]
        yield from run("delay", wanted)
        for shape in list(brackets):
            lo, hi = brackets[shape]
            mid = (lo + hi) // 2
            if at(shape, mid) not in seen or at(shape, mid + 1) not in seen:  # out of trials
                return
            if peak(shape, mid) >= peak(shape, mid + 1):
                hi = mid
            else:
                lo = mid + 1
            if lo >= hi:
                del brackets[shape]
            else:
                brackets[shape] = [lo, hi]
