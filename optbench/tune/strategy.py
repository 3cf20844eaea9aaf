"""The search's sequence of candidates, decided from outcomes alone (no clock, no randomness): the same outcomes
give the same candidates, so a resumed search replays what it recorded and an interrupted one continues where it
stopped.

1. **anchor**: fp32 (what "faster" is measured against), the plain fp16 graph (where fp16 is a fallback), and the
   base int8 graph with no fallback.
2. **calibration**: the other calibration settings of the space, one change from the base at a time, on the whole
   int8 graph; the best of them (passing first, then the largest worst margin) is kept.
3. **escalate**: the node groups ranked by the error they introduce in that graph (``optbench explain``); the top
   1, 2, 4, ... move to the first fallback precision until the budgets hold (then to the next precision, fp32,
   when even every ranked group in fp16 does not pass).
4. **bisect**: the smallest passing prefix of the ranking, between the last failing count and the first passing;
   then the same groups at the other fallback precision (**level**), kept where it passes and runs faster.
5. **give back**: each group of that prefix returned to int8 on its own, least offending first, kept returned
   where the budgets still hold.

The same escalation runs for a failing fp16 graph on a backend where fp16 runs faster than fp32 (groups kept in
fp32). Steps stop at the trial limit; the driver also stops them at its time budget.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Calib:
    method: str
    per_channel: bool
    symmetric: bool

    def label(self) -> str:
        return f"{self.method}{'-pc' if self.per_channel else ''}{'-sym' if self.symmetric else ''}"


@dataclass(frozen=True)
class Candidate:
    """A graph to build: fp32, fp16 or int8 (with its calibration), and the node groups moved off its precision,
    each with the precision it falls back to, in ranking order."""

    kind: str                                   # fp32 | fp16 | int8
    calib: Calib | None = None
    fallbacks: tuple[tuple[str, str], ...] = ()  # (group, precision)

    @property
    def key(self) -> str:
        tail = ",".join(f"{g}={p}" for g, p in self.fallbacks)
        return f"{self.kind}:{self.calib.label() if self.calib else ''}:{tail}"

    def by_precision(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for g, p in self.fallbacks:
            out.setdefault(p, []).append(g)
        return out


@dataclass(frozen=True)
class Outcome:
    ran: bool               # the variant was built, judged and timed
    passed: bool            # every accuracy check and constraint holds
    score: float            # the worst margin to a budget (< 0: fails); -inf where it did not run
    p50: float | None = None
    faster_than_fp32: bool | None = None  # the latency gate's verdict against fp32 on the same backend
    mean_score: float = 0.0  # the mean margin over every budget check (tells apart candidates that fail alike)


@dataclass(frozen=True)
class Step:
    phase: str
    candidates: list[Candidate]


@dataclass(frozen=True)
class Rank:
    """A request for the node groups of a candidate's graph, ranked by the error they introduce."""

    candidate: Candidate


@dataclass
class Space:
    calibs: list[Calib]            # the base first
    fallbacks: list[str]           # fallback precisions of an int8 group, in order (fp16, fp32)
    trials: int
    notes: list[str] = field(default_factory=list)


Outcomes = dict[Candidate, Outcome]
Search = Generator[Step | Rank, "Outcomes | list[str]", None]


def calibrations(methods: list[str], per_channel: list[bool], symmetric: list[bool], base: Calib) -> list[Calib]:
    """The base, then one change from it at a time, in the space's order."""
    out = [base]
    for m in methods:
        out.append(replace(base, method=m))
    for pc in per_channel:
        out.append(replace(base, per_channel=pc))
    for sym in symmetric:
        out.append(replace(base, symmetric=sym))
    return list(dict.fromkeys(out))


def best(cands: list[Candidate], seen: Outcomes) -> Candidate | None:
    """Passing first, then the largest worst margin, the largest mean margin, the fastest; ties in the order
    given."""
    ran = [c for c in cands if c in seen and seen[c].ran]
    if not ran:
        return None
    return max(ran, key=lambda c: (seen[c].passed, seen[c].score, seen[c].mean_score,
                                   -(seen[c].p50 or float("inf"))))


def search(space: Space) -> Search:
    """The candidates step by step; the caller sends each step's outcomes back (and each Rank's groups)."""
    seen: Outcomes = {}
    budget = [space.trials]

    def run(phase: str, cands: list[Candidate]):
        cands = [c for c in cands if c not in seen][: budget[0]]
        if not cands:
            return
        budget[0] -= len(cands)
        got = yield Step(phase, cands)
        seen.update(got)

    fp32, base = Candidate("fp32"), Candidate("int8", space.calibs[0])
    levels = list(space.fallbacks)
    yield from run("anchor", [fp32] + ([Candidate("fp16")] if "fp16" in levels else []) + [base])
    half = seen.get(Candidate("fp16"))
    if half is not None and half.faster_than_fp32 is False:  # fp16 groups would buy no time over fp32 ones
        levels.remove("fp16")
        space.notes.append("the fp16 graph runs no faster than fp32 here: int8 groups fall back to fp32 directly")
    if not seen.get(base, Outcome(False, False, float("-inf"))).passed:
        yield from run("calibration", [Candidate("int8", c) for c in space.calibs[1:]])
    top = best([Candidate("int8", c) for c in space.calibs], seen)
    if top is not None and not seen[top].passed and levels:
        yield from _escalate(top, levels, seen, run)
    if half is not None and half.ran and not half.passed and half.faster_than_fp32:
        yield from _escalate(Candidate("fp16"), ["fp32"], seen, run)


def _escalate(start: Candidate, levels: list[str], seen: Outcomes, run) -> Search:
    """Move the ranked groups of ``start``'s graph off its precision: doubling, bisect, give back."""
    groups = yield Rank(start)
    if not groups:
        return

    def cand(chosen: list[str], level: str) -> Candidate:
        return replace(start, fallbacks=tuple((g, level) for g in chosen))

    for level in levels:
        lo, hi, k = 0, None, 1
        while hi is None:
            c = cand(groups[:k], level)
            yield from run("escalate", [c])
            if c not in seen:
                return  # out of trials
            if seen[c].passed:
                hi = k
            elif k >= len(groups):
                break
            else:
                lo, k = k, min(2 * k, len(groups))
        if hi is None:
            continue
        while hi - lo > 1:
            mid = (lo + hi) // 2
            c = cand(groups[:mid], level)
            yield from run("bisect", [c])
            if c not in seen:
                return
            lo, hi = (lo, mid) if seen[c].passed else (mid, hi)
        for other in levels[levels.index(level) + 1:]:  # the same groups one level up may run faster
            here, there = cand(groups[:hi], level), cand(groups[:hi], other)
            yield from run("level", [there])
            if there not in seen:
                return
            if seen[there].passed and (seen[there].p50 or float("inf")) < (seen[here].p50 or float("inf")):
                level = other
        kept = list(groups[:hi])
        for g in reversed(groups[: hi - 1]):
            trial = [x for x in kept if x != g]
            c = cand(trial, level)
            yield from run("give-back", [c])
            if c not in seen:
                return
            if seen[c].passed:
                kept = trial
        return
