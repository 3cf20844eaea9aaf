"""Statistics derived from raw latency samples (milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np


@dataclass(frozen=True)
class Measurement:
    """Raw per-iteration samples (ms) and what they were taken with; statistics are derived lazily."""

    samples_ms: tuple[float, ...]
    batch_size: int
    settings: dict = field(default_factory=dict)
    cv_warn: float = 0.10

    @cached_property
    def _arr(self) -> np.ndarray:
        if not self.samples_ms:
            raise ValueError("a measurement needs at least one sample")
        return np.asarray(self.samples_ms, dtype=np.float64)

    def percentile(self, q: float) -> float:
        return float(np.percentile(self._arr, q))

    @property
    def mean(self) -> float:
        return float(self._arr.mean())

    @property
    def std(self) -> float:
        return float(self._arr.std(ddof=1)) if len(self._arr) > 1 else 0.0

    @property
    def cv(self) -> float:
        return self.std / self.mean if self.mean > 0 else 0.0

    @property
    def throughput(self) -> float:
        """Items per second at the median latency."""
        p50 = self.percentile(50)
        return self.batch_size * 1000.0 / p50 if p50 > 0 else float("inf")

    @property
    def warnings(self) -> list[str]:
        if self.cv > self.cv_warn:
            return [f"noisy: CV {self.cv:.1%} > {self.cv_warn:.0%} over {len(self._arr)} samples"]
        return []

    def summary(self, prefix: str = "latency_ms") -> dict[str, float]:
        a = self._arr
        return {
            f"{prefix}_p50": self.percentile(50), f"{prefix}_p90": self.percentile(90),
            f"{prefix}_p95": self.percentile(95), f"{prefix}_p99": self.percentile(99),
            f"{prefix}_mean": self.mean, f"{prefix}_std": self.std,
            f"{prefix}_min": float(a.min()), f"{prefix}_max": float(a.max()), f"{prefix}_cv": self.cv,
        }
