"""Change points in a run-by-run series: where a metric's level steps, found by a robust optimal partition.

Each series is split into segments minimising the sum of absolute deviations from each segment's median plus a
penalty per segment (a Potts-style step fit, as ASV does for code benchmarks): absolute deviations and medians
let one noisy run neither make nor hide a step. The penalty scales with the series' own noise, read from the
median absolute difference of successive runs (which a step barely moves). A step is reported where the two
segments' medians differ by more than ``min_effect`` (the latency gate's 5 %); a step that leaves one run
behind it is reported only at the end of the series (the newest run), where it is the question asked.

Series are only ever formed on one machine with one set of library versions (:func:`split_comparable`): the
table says which machine each series ran on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BETA = 3.0  # penalty per segment, in noise units times log(n)


@dataclass
class Step:
    index: int  # the first point of the new level
    before: float  # median level before
    after: float  # median level after

    @property
    def ratio(self) -> float:
        return self.after / self.before if self.before else math.inf


def noise_of(values: np.ndarray) -> float:
    """A robust standard deviation of the run-to-run noise: MAD of successive differences / sqrt(2)."""
    if len(values) < 3:
        return 0.0
    d = np.abs(np.diff(values))
    return float(1.4826 * np.median(d) / math.sqrt(2))


def change_points(values, min_effect: float = 0.05, beta: float = BETA) -> list[Step]:
    """Steps of the series ``values`` (in run order) larger than ``min_effect`` relative."""
    x = np.asarray([v for v in values], dtype=np.float64)
    n = len(x)
    if n < 3 or not np.isfinite(x).all():
        return []
    sigma = noise_of(x)
    scale = float(np.median(np.abs(x))) or 1.0
    sigma = max(sigma, 1e-3 * scale)  # a perfectly flat series still needs a positive penalty
    gamma = beta * sigma * math.log(n)
    cost = np.empty((n, n + 1))
    for i in range(n):
        for j in range(i + 1, n + 1):
            seg = x[i:j]
            cost[i, j] = float(np.abs(seg - np.median(seg)).sum())
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    cut = np.zeros(n + 1, dtype=int)
    for j in range(1, n + 1):
        for i in range(j):
            c = best[i] + cost[i, j] + gamma
            if c < best[j]:
                best[j], cut[j] = c, i
    bounds, j = [], n
    while j > 0:
        bounds.append(cut[j])
        j = cut[j]
    starts = sorted(set(bounds) - {0})
    edges = [0, *starts, n]
    segments = [(a, b) for a, b in zip(edges, edges[1:])]
    # a single odd run inside the series is an outlier, not a level: its segment is dropped, and the levels on
    # either side are compared directly (a single run at the very end is the newest run: kept)
    segments = [(a, b) for a, b in segments if b - a >= 2 or b == n]
    steps = []
    for (a0, b0), (a1, b1) in zip(segments, segments[1:]):
        before, after = x[a0:b0], x[a1:b1]
        lo, hi = float(np.median(before)), float(np.median(after))
        if lo and abs(hi / lo - 1) > min_effect and abs(hi - lo) > 2 * sigma:
            steps.append(Step(int(a1), lo, hi))
    return steps


def split_comparable(points: list) -> list[tuple[tuple[str, str], list]]:
    """A variant's points grouped by machine and library versions, each group in run order: runs on two CI
    machines make two series, never one with steps between them."""
    groups: dict[tuple[str, str], list] = {}
    for p in points:
        groups.setdefault((p.machine, p.versions), []).append(p)
    return list(groups.items())
