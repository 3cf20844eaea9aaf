"""The latency verdict on paired re-timing: both sides timed again, in turns, in the same minutes.

Two runs timed minutes apart differ by what the machine did in between, and on a shared machine that term can be
larger than the change a gate looks for (see :mod:`optbench.measure.verdict`). Timing the baseline's artifact and the
candidate's again, alternately (randomized multiple interleaved trials; duet benchmarking), removes it. Each *pair*
is one fresh process of each side, started together, whose timing rounds take turns (:mod:`optbench.measure.turns`)
in ABBA blocks of rounds (baseline, candidate, candidate, baseline, or the mirror image, drawn at random per block;
:func:`schedule`), on one core for a one-thread CPU variant: a slow stretch of the machine, seconds long, falls on both sides' rounds alike,
a drift that is linear over a block cancels over it, and neither side always goes first. Pairs are the independent
units: what differs from one process to the next (where its memory landed) stays in their spread.

The decision is on the pairs' ratios, in logs (a 2x and a 0.5x are the same distance from no change):

- a pair is left out where one of its processes was timed on a visibly busy machine; more than half of the pairs
  left out, or fewer than MIN_PAIRS left: inconclusive, with the reason;
- effect = the Hodges-Lehmann estimate (the median of the Walsh averages of the log ratios), its interval the exact
  Wilcoxon signed-rank interval (CONFIDENCE reported), the signed-rank test's p-value beside;
- same: the SAME_CONFIDENCE interval lies within +-effect (an equivalence test: two one-sided tests at 5 %);
  slower or faster: the CHANGE_CONFIDENCE interval excludes no change and the estimate is beyond the effect (99 %
  a look: a re-timing looks up to four times, and a false change must stay rarer than 5 % over all of them;
  with 8 pairs that takes every pair on the same side); otherwise inconclusive, saying which it missed.

A re-timing looks more than once: PAIRS pairs first, then MORE_PAIRS more while the verdict is open (inconclusive on
an interval: :func:`open_verdict`), up to the most it may run (MOST_PAIRS by default), each look deciding on every
pair so far. A quiet machine and a clear change stop at the first look; a same-code comparison whose pairs spread
a few percent takes more pairs to put its interval inside +-effect. A change verdict is tested at CHANGE_CONFIDENCE a look for
that reason (same-code pairs on a 2-core VM were called 5.2 % "faster" at 8 pairs when tested at 95 %).

Each process's level is the median of its quiet rounds (:func:`optbench.measure.verdict.quiet`), as for a run's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from optbench.measure.verdict import LatencyVerdict, quiet

CONFIDENCE = 0.95           # the interval reported
SAME_CONFIDENCE = 0.90      # "same" when this interval lies within +-effect: two one-sided tests at 5 % each
CHANGE_CONFIDENCE = 0.99    # "slower"/"faster" only when this interval excludes no change: 1 % a look, so the
#                             four looks a re-timing may take stay under 5 % together (Bonferroni)


def fewest_pairs(confidence: float) -> int:
    """The fewest pairs whose exact signed-rank interval reaches ``confidence``: with every pair on one side the
    two-sided p-value is 2 / 2**n, its smallest, which must be at most 1 - confidence (as :func:`rank_interval`)."""
    return next(n for n in itertools.count(1) if 2 / 2**n <= 1 - confidence)


MIN_PAIRS = fewest_pairs(CONFIDENCE)            # 6: fewer quiet pairs are no paired verdict at all
CHANGE_PAIRS = fewest_pairs(CHANGE_CONFIDENCE)  # 8: a change verdict needs this many quiet pairs, so a re-timing may
#                                                 run no fewer (--pairs)
PAIRS = 8        # pairs a re-timing starts with: 16 worker processes a variant
MORE_PAIRS = 8   # pairs added each time the verdict on those so far is still open
MOST_PAIRS = 32  # pairs at most, by default (--pairs): four looks
SIDES = ("baseline", "candidate")


@dataclass(frozen=True)
class Pair:
    """One baseline process and one candidate process, their rounds in turns; levels in ms."""

    baseline_ms: float
    candidate_ms: float
    first: str               # the side whose round ran first: baseline | candidate
    busy: str | None = None  # why one of its processes counts as timed on a busy machine

    @property
    def ratio(self) -> float:
        return self.candidate_ms / self.baseline_ms

    def to_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}


def schedule(rounds: int, rng: np.random.Generator) -> list[str]:
    """The order of a pair's 2 x ``rounds`` timing rounds: ABBA or BAAB blocks at random (an odd last pair of
    rounds: AB or BA)."""
    out: list[str] = []
    while len(out) < 2 * rounds:
        first, second = SIDES if rng.random() < 0.5 else SIDES[::-1]
        out += [first, second, second, first] if 2 * rounds - len(out) >= 4 else [first, second]
    return out


def level(round_medians: list[float]) -> float:
    """A process's level: the median of its quiet rounds (ms)."""
    return float(np.median(quiet(list(round_medians))))


def _null_counts(n: int) -> np.ndarray:
    """How many of the 2**n sign patterns give each signed-rank sum 0..n(n+1)/2 (the exact null distribution)."""
    counts = np.zeros(n * (n + 1) // 2 + 1, dtype=np.float64)
    counts[0] = 1
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return counts


def rank_interval(log_ratios: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float, float, float] | None:
    """(estimate, low, high, confidence reached) of the log ratio: Hodges-Lehmann and the exact signed-rank
    interval; None where too few values reach ``confidence``."""
    n = len(log_ratios)
    cdf = np.cumsum(_null_counts(n)) / 2.0**n
    k = int(np.searchsorted(cdf, (1 - confidence) / 2, side="right"))  # P(T <= k - 1) <= alpha / 2
    if k < 1:
        return None
    i, j = np.triu_indices(n)
    walsh = np.sort((log_ratios[i] + log_ratios[j]) / 2)
    return float(np.median(walsh)), float(walsh[k - 1]), float(walsh[len(walsh) - k]), float(1 - 2 * cdf[k - 1])


def _p_value(log_ratios: np.ndarray) -> float:
    from scipy.stats import wilcoxon

    if np.all(log_ratios == 0):
        return 1.0
    return float(wilcoxon(log_ratios).pvalue)


def decide_paired(pairs: list[Pair], effect: float = 0.05, confidence: float = CONFIDENCE) -> LatencyVerdict:
    """The verdict on the pairs of a re-timing (every pair kept in the verdict, the busy ones too)."""
    kept = [p for p in pairs if not p.busy]
    busy = len(pairs) - len(kept)
    if busy * 2 > len(pairs) or len(kept) < MIN_PAIRS:
        why = (f"machine busy during the re-timing: {busy} of {len(pairs)} pairs ran beside other load "
               f"({next(p.busy for p in pairs if p.busy)})" if busy else f"{len(pairs)} pairs")
        return LatencyVerdict("inconclusive", _median_ratio(kept or pairs), None,
                              f"{why}; a paired verdict needs at least {MIN_PAIRS} quiet pairs and more than half of "
                              f"them quiet", pairs=tuple(pairs))
    logs = np.log([p.ratio for p in kept])
    est, lo, hi, reached = rank_interval(logs, confidence)
    ratio, low, high = math.exp(est), math.exp(lo), math.exp(hi)
    numbers = (f"difference {ratio - 1:+.1%}, {reached:.0%} interval {low - 1:+.1%}..{high - 1:+.1%}, effect "
               f"{effect:.0%}; {len(kept)} pairs" + (f" ({busy} left out: busy machine)" if busy else "") +
               f", Wilcoxon signed-rank p {_p_value(logs):.2g}")
    out = dict(ratio=ratio, noise=(high - low) / 2, interval=(low, high), pairs=tuple(pairs))
    _, same_lo, same_hi, _ = rank_interval(logs, SAME_CONFIDENCE)
    if math.exp(same_lo) >= 1 - effect and math.exp(same_hi) <= 1 + effect:
        return LatencyVerdict("same", reason=numbers, **out)
    change = rank_interval(logs, CHANGE_CONFIDENCE)  # None: too few pairs to reach it
    if change is not None and abs(ratio - 1) > effect and (change[1] > 0 or change[2] < 0):
        c_low, c_high = math.exp(change[1]), math.exp(change[2])
        return LatencyVerdict("slower" if ratio > 1 else "faster",
                              reason=f"{numbers}; {change[3]:.0%} interval {c_low - 1:+.1%}..{c_high - 1:+.1%}", **out)
    if low <= 1 <= high:
        why = (f"the pairs disagree: the interval holds both no change and changes beyond {effect:.0%} (more pairs, "
               f"--pairs, or a quieter machine settle it)")
    elif abs(ratio - 1) > effect:
        why = (f"a change beyond the effect {effect:.0%}, not yet at {CHANGE_CONFIDENCE:.0%} confidence a look "
               f"(more pairs settle it)")
    else:
        why = f"a change, but not one beyond the effect {effect:.0%} with confidence"
    return LatencyVerdict("inconclusive", reason=f"{why} ({numbers})", **out)


def open_verdict(v: LatencyVerdict) -> bool:
    """Whether more pairs could settle ``v``: inconclusive on an interval (the pairs disagree, or a change not yet
    beyond the effect with confidence); never where the machine was busy or too few pairs were quiet."""
    return v.word == "inconclusive" and v.interval is not None


def batches(most: int) -> list[int]:
    """The pairs of each look of a re-timing of at most ``most`` pairs: PAIRS first, then MORE_PAIRS at a time while
    the verdict stays open (the last look takes what is left)."""
    out = [min(PAIRS, most)]
    while sum(out) < most:
        out.append(min(MORE_PAIRS, most - sum(out)))
    return out


def settle(more: Callable[[int, int], list[Pair] | str], most: int, effect: float = 0.05,
           say: Callable[[str], None] = lambda s: None) -> LatencyVerdict | str:
    """The verdict of a re-timing that looks more than once: ``more(n, done)`` times ``n`` further pairs (``done``
    ran before) and returns them, or why it could not; each look decides on every pair so far, and the next look
    is taken only while the verdict is open and fewer than ``most`` pairs ran (:func:`batches`)."""
    got: list[Pair] = []
    v = None
    for n in batches(most):
        new = more(n, len(got))
        if isinstance(new, str):
            return new
        got += new
        v = decide_paired(got, effect)
        if not open_verdict(v):
            break
        if len(got) < most:
            say(f"  {len(got)} pairs leave it open ({v.reason.split(' (')[0]}): more pairs")
    return v


def _median_ratio(pairs: list[Pair]) -> float | None:
    return float(np.exp(np.median(np.log([p.ratio for p in pairs])))) if pairs else None
