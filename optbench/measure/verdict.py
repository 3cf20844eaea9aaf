"""The latency verdict between two runs of a variant: faster, slower, same, or inconclusive.

The samples of one process say little about the next run: on a shared machine the variance between runs
dominates, and much of it is invisible from inside the guest. On a 2-core VM (no steal, no other process), the
round medians of one variant moved between 154 and 277 us within a run, in periods of a few seconds, while its
fastest rounds agreed within 3 % across five runs. Interference only ever adds time, so the level of a side is
taken from its *quiet rounds*, the fastest third (at least two) of its round medians (each round a fresh warm-up
and timing window):

- a run timed on a visibly busy machine (other processes on our CPUs, steal, throttling) is inconclusive: not a
  regression, and not "same" either;
- level = median of a side's quiet rounds; ratio = candidate level / baseline level; d = ratio - 1;
- noise = half the relative spread (max - min) / median of each side's quiet rounds, summed;
- |d| <= effect and noise <= effect: same; d beyond the effect and beyond the noise: slower or faster;
  otherwise inconclusive, with the numbers ("noise 12% > effect 5%").

Each round also carries a machine-speed probe (``probe_us``, a fixed pure-Python loop timed around it). It flags
slowed periods only roughly (a slowdown can start or end inside a round), so it never drops rounds; it vetoes a
faster/slower verdict when the machine itself ran over PROBE_SLOW slower during one side's quiet rounds than
during the other's, in the direction of the difference, and by enough to explain it (the difference within
PROBE_EXPLAINS times that slowdown): then the verdict is inconclusive.
Rows with one timing window (runs made before rounds existed) are cut into three chronological pseudo-rounds,
and the verdict says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PSEUDO_ROUNDS = 3
# A worker process's memory layout and core placement move its latency as a whole: on a 2-core VM two same-code
# runs of one process each came out up to 1.6x apart while their rounds agreed within 1-2 %. The gate sees that
# spread only over GATE_PROCESSES worker processes a side (measure.processes); with fewer, only a difference
# beyond PROCESS_SHIFT is called faster or slower, anything smaller is inconclusive and says how to settle it.
GATE_PROCESSES = 3
PROCESS_SHIFT = 0.6
PROBE_SLOW = 0.15  # a round whose machine-speed probe ran this much above the best ran on a slowed machine
# A machine slowed by s explains a latency difference of about s, not more: the probe vetoes a verdict only when
# the difference is within PROBE_EXPLAINS times the slowdown it saw. (On a 2-core VM a candidate doing 2x the
# work came out +91..+127 % with its own rounds' probes +25..+39 %: the probe loop runs after the window, where
# the heavier workload's lingering threads share the cores; a +39 % machine cannot make a variant 2x slower.)
PROBE_EXPLAINS = 2.0


@dataclass(frozen=True)
class LatencyVerdict:
    word: str            # faster | slower | same | inconclusive
    ratio: float | None  # candidate / baseline level; > 1 is slower
    noise: float | None
    reason: str
    # whether timing both sides again may settle an inconclusive verdict (a busy machine, noise, a slowed probe), or
    # not (no rounds, one round on a side, too few worker processes: the settings decide those)
    settles: bool = True
    # a paired verdict (both sides timed again alternately, see :mod:`optbench.measure.paired`): the ratio's
    # confidence interval and every pair it was decided on; None and () for a verdict on the runs' own rounds
    interval: tuple[float, float] | None = None
    pairs: tuple = ()

    @property
    def line(self) -> str:
        ratio = f"{self.ratio:.3f}x" if self.ratio is not None else "n/a"
        if self.interval is not None:
            return (f"{self.word}: {ratio} the baseline, paired (interval {self.interval[0]:.3f}x..{self.interval[1]:.3f}x"
                    f"); {self.reason}")
        if self.pairs:
            return f"{self.word}: {ratio} the baseline, paired; {self.reason}"
        return f"{self.word}: p50 {ratio} the baseline; {self.reason}"


@dataclass(frozen=True)
class Rounds:
    medians: list[float]
    probes: list[float] | None = None  # machine-speed probe per round (us)
    busy: str | None = None
    note: str | None = None


def _busy(row: dict) -> str | None:
    value = row.get("busy")
    return value if isinstance(value, str) and value else None  # rows through pandas carry NaN for None


def overlapped_rounds(row: dict) -> set[int]:
    """The rounds whose window overlapped a timing window on another GPU of the node (rows record both)."""
    others = row.get("overlapped_windows")
    rounds = row.get("rounds")
    if not isinstance(others, list) or not others or not isinstance(rounds, list):
        return set()
    hit = set()
    for i, r in enumerate(rounds):
        w = r.get("window") if isinstance(r, dict) else None
        if isinstance(w, list) and len(w) == 2 and any(o["start"] < w[1] and o["end"] > w[0] for o in others):
            hit.add(i)
    return hit


def rounds_of(row: dict) -> Rounds:
    """A row's round medians (ms) and probes; made up from one window's samples for rows before rounds."""
    meds = row.get("latency_ms_rounds")
    probes = row.get("probe_us_rounds")
    probes = [float(p) for p in probes] if isinstance(probes, list) and probes else None
    if isinstance(meds, list) and meds:
        meds = [float(m) for m in meds]
        probes = probes if probes and len(probes) == len(meds) else None
        hit = overlapped_rounds(row)
        if hit and len(meds) == len(row.get("rounds") or []):
            keep = [i for i in range(len(meds)) if i not in hit]
            if len(keep) < 2:  # too few rounds timed alone: judged as if the machine was busy
                return Rounds(meds, probes, _busy(row) or f"{len(hit)} of {len(meds)} rounds overlapped timing on "
                                                             f"another GPU of the node")
            return Rounds([meds[i] for i in keep], [probes[i] for i in keep] if probes else None, _busy(row),
                          f"{len(hit)} round(s) left out: they overlapped timing on another GPU of the node")
        return Rounds(meds, probes, _busy(row))
    samples = row.get("samples_ms") or []
    if not samples:
        return Rounds([], None, _busy(row), "no latency samples")
    parts = np.array_split(np.asarray(samples, dtype=np.float64), min(PSEUDO_ROUNDS, len(samples)))
    return Rounds([float(np.median(p)) for p in parts], None, _busy(row),
                  "made before rounds existed: thirds of one timing window")


def spread(meds: list[float]) -> float:
    mid = float(np.median(meds))
    return (max(meds) - min(meds)) / mid if len(meds) > 1 and mid > 0 else 0.0


def level(row: dict) -> float | None:
    """A row's latency level (ms): the median of its quiet rounds, what the gate compares; None without rounds."""
    meds = rounds_of(row).medians
    return float(np.median(quiet(meds))) if meds else None


def unsteady(row: dict, spread_warn: float) -> str | None:
    """Why a row's level cannot stand for its latency in a ratio: it was timed on a busy machine, or its round
    medians spread beyond ``spread_warn`` (one interference-free round among slow ones makes any ratio absurd);
    None where it can."""
    r = rounds_of(row)
    if r.busy:
        return f"timed on a busy machine ({r.busy})"
    if (s := spread(r.medians)) > spread_warn:
        return f"round medians spread {s:.0%} > {spread_warn:.0%} ({', '.join(f'{m:.4g}' for m in r.medians)} ms)"
    return None


def quiet_index(meds: list[float]) -> list[int]:
    """Indices of the fastest third of the round medians, at least two (all of them where there are fewer)."""
    order = sorted(range(len(meds)), key=lambda i: meds[i])
    return order[: max(2, -(-len(meds) // 3))]


def quiet(meds: list[float]) -> list[float]:
    return [meds[i] for i in quiet_index(meds)]


def _probe_shift(candidate: Rounds, baseline: Rounds) -> float | None:
    """How much slower the machine was (speed probe) during the candidate's quiet rounds than the baseline's."""
    if candidate.probes is None or baseline.probes is None:
        return None
    pc = float(np.median([candidate.probes[i] for i in quiet_index(candidate.medians)]))
    pb = float(np.median([baseline.probes[i] for i in quiet_index(baseline.medians)]))
    return pc / pb - 1 if pb > 0 else None


def _slowed(r: Rounds, best: float | None) -> int:
    if r.probes is None or best is None:
        return 0
    return sum(p > best * (1 + PROBE_SLOW) for p in r.probes)


def decide(candidate: Rounds, baseline: Rounds, effect: float = 0.05) -> LatencyVerdict:
    """The verdict on two sides' rounds."""
    if not candidate.medians or not baseline.medians:
        return LatencyVerdict("inconclusive", None, None, "no rounds to compare", settles=False)
    if candidate.busy or baseline.busy:
        who = "candidate" if candidate.busy else "baseline"
        ratio = float(np.median(quiet(candidate.medians)) / np.median(quiet(baseline.medians)))
        return LatencyVerdict("inconclusive", ratio, None,
                              f"machine busy while the {who} was timed ({candidate.busy or baseline.busy})")
    if len(candidate.medians) < 2 or len(baseline.medians) < 2:
        ratio = float(np.median(candidate.medians) / np.median(baseline.medians))
        return LatencyVerdict("inconclusive", ratio, None, "one round on a side: no measure of the noise",
                              settles=False)
    c, b = quiet(candidate.medians), quiet(baseline.medians)
    ratio = float(np.median(c) / np.median(b))
    d = ratio - 1
    noise = (spread(c) + spread(b)) / 2
    probes = (candidate.probes or []) + (baseline.probes or [])
    slowed = _slowed(candidate, min(probes) if probes else None) + _slowed(baseline, min(probes) if probes else None)
    total = len(candidate.medians) + len(baseline.medians)
    seen = f"; quiet rounds {len(c)}+{len(b)} of {total}" + (f", {slowed} on a slowed machine" if slowed else "")
    numbers = f"difference {d:+.1%}, noise {noise:.1%}, effect {effect:.0%}{seen}"
    if abs(d) <= effect:
        if noise <= effect:
            return LatencyVerdict("same", ratio, noise, numbers)
        return LatencyVerdict("inconclusive", ratio, noise, f"noise {noise:.1%} > effect {effect:.0%} ({numbers})")
    if abs(d) > noise:
        shift = _probe_shift(candidate, baseline)
        if shift is not None and abs(shift) > PROBE_SLOW and shift * d > 0 and abs(d) <= PROBE_EXPLAINS * abs(shift):
            who = "candidate" if shift > 0 else "baseline"
            return LatencyVerdict("inconclusive", ratio, noise,
                                  f"the machine itself was slower while the {who}'s quietest rounds ran (speed "
                                  f"probe {shift:+.0%}), in the direction of the difference ({numbers})")
        return LatencyVerdict("slower" if d > 0 else "faster", ratio, noise, numbers)
    return LatencyVerdict("inconclusive", ratio, noise, f"noise {noise:.1%} >= difference {abs(d):.1%} ({numbers})")


def processes_of(row: dict) -> int:
    n = row.get("timing_processes")
    return int(n) if isinstance(n, (int, float)) and n == n and n >= 1 else 1


def verdict_for(candidate_row: dict, baseline_row: dict, effect: float) -> LatencyVerdict:
    """The verdict for one variant's rows; notes what older rows lack."""
    c, b = rounds_of(candidate_row), rounds_of(baseline_row)
    v = decide(c, b, effect)
    procs = min(processes_of(candidate_row), processes_of(baseline_row))
    if v.word in ("faster", "slower") and procs < GATE_PROCESSES and abs((v.ratio or 1) - 1) <= PROCESS_SHIFT:
        v = LatencyVerdict("inconclusive", v.ratio, v.noise,
                           f"timed in {procs} worker process{'es' if procs > 1 else ''} on a side, which cannot see "
                           f"the between-process shifts (up to {1 + PROCESS_SHIFT:.1f}x seen); only a difference "
                           f"beyond {PROCESS_SHIFT:.0%} is a verdict then. Set measure.processes: {GATE_PROCESSES} "
                           f"in both runs to settle it ({v.reason})", settles=False)
    notes = [f"{side}: {r.note}" for side, r in (("candidate", c), ("baseline", b)) if r.note]
    if notes:
        v = LatencyVerdict(v.word, v.ratio, v.noise, v.reason + "; " + "; ".join(notes), v.settles)
    return v
