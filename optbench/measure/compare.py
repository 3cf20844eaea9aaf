"""Comparing two sets of raw latency samples: bootstrap CI of the ratio of medians, Mann-Whitney U."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float        # median(new) / median(old); > 1 is slower
    low: float          # confidence interval of the ratio
    high: float
    p_value: float      # two-sided Mann-Whitney U

    @property
    def significant(self) -> bool:
        """The interval excludes 1: the difference is beyond the noise of the samples."""
        return self.low > 1.0 or self.high < 1.0


MAX_BOOTSTRAP_N = 2000  # beyond this many samples the median is already tight: bootstrap a seeded subset


def median_ratio(new: list[float] | np.ndarray, old: list[float] | np.ndarray, *, resamples: int = 1000,
                 confidence: float = 0.99, seed: int = 0) -> RatioEstimate:
    a, b = np.asarray(new, dtype=np.float64), np.asarray(old, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("both sample sets need at least one sample")
    rng = np.random.default_rng(seed)
    ratio, p_value = float(np.median(a) / np.median(b)), _mann_whitney(a, b)
    if a.size > MAX_BOOTSTRAP_N:
        a = rng.choice(a, MAX_BOOTSTRAP_N, replace=False)
    if b.size > MAX_BOOTSTRAP_N:
        b = rng.choice(b, MAX_BOOTSTRAP_N, replace=False)
    ma = np.median(a[rng.integers(0, a.size, (resamples, a.size))], axis=1)
    mb = np.median(b[rng.integers(0, b.size, (resamples, b.size))], axis=1)
    ratios = ma / mb
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(ratios, [tail, 100 - tail])
    return RatioEstimate(ratio, float(low), float(high), p_value)


def _mann_whitney(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import mannwhitneyu

    if np.all(a == a[0]) and np.all(b == a[0]):
        return 1.0
    return float(mannwhitneyu(a, b, alternative="two-sided").pvalue)
