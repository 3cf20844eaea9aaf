"""Statistics derived from raw latency samples (milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from optbench.row import warning


@dataclass(frozen=True)
class Measurement:
    """Raw per-iteration samples (ms) and what they were taken with; statistics are derived lazily."""

    samples_ms: tuple[float, ...]
    batch_size: int
    settings: dict = field(default_factory=dict)
    cv_warn: float = 0.10
    rounds: tuple[tuple[float, ...], ...] = ()  # the samples again, split by round (empty: one window)
    spread_warn: float = 0.05

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

    @cached_property
    def robust(self) -> dict[str, float | int]:
        """Median, IQR, MAD, Tukey-fence outlier count, min, and the CV of the samples inside the fences."""
        a = self._arr
        q1, med, q3 = (float(x) for x in np.percentile(a, [25, 50, 75]))
        iqr = q3 - q1
        inside = a[(a >= q1 - 1.5 * iqr) & (a <= q3 + 1.5 * iqr)]
        trimmed_cv = float(inside.std(ddof=1) / inside.mean()) if len(inside) > 1 and inside.mean() > 0 else 0.0
        return {"median": med, "iqr": iqr, "mad": float(np.median(np.abs(a - med))), "min": float(a.min()),
                "outliers": int(len(a) - len(inside)), "cv_trimmed": trimmed_cv}

    @property
    def round_medians(self) -> list[float]:
        """The median of each round's samples (rounds: fresh warm-up and timing window each)."""
        return [float(np.median(r)) for r in self.rounds if len(r)]

    @property
    def round_spread(self) -> float | None:
        """(max - min) / median of the round medians: the between-round noise; None with fewer than 2 rounds."""
        meds = self.round_medians
        if len(meds) < 2:
            return None
        mid = float(np.median(meds))
        return (max(meds) - min(meds)) / mid if mid > 0 else 0.0

    @property
    def warnings(self) -> list[dict[str, str]]:
        out = []
        spread = self.round_spread
        if spread is not None and spread > self.spread_warn:
            meds = ", ".join(f"{m:.4g}" for m in self.round_medians)
            out.append(warning("unstable", f"unstable: round medians spread {spread:.1%} > {self.spread_warn:.0%} ({meds} ms)"))
        cv = self.robust["cv_trimmed"]
        if cv > self.cv_warn:
            out.append(warning("noisy", f"noisy samples: CV {cv:.1%} > {self.cv_warn:.0%} inside the Tukey fences "
                       f"({self.robust['outliers']} outliers of {len(self._arr)})"))
        return out

    def summary(self, prefix: str = "latency_ms") -> dict[str, float]:
        a, r = self._arr, self.robust
        ratio = prefix.removesuffix("_ms")  # ratios and counts carry no unit in their names (latency_cv)
        out = {
            f"{prefix}_p50": self.percentile(50), f"{prefix}_p90": self.percentile(90),
            f"{prefix}_p95": self.percentile(95), f"{prefix}_p99": self.percentile(99),
            f"{prefix}_mean": self.mean, f"{prefix}_std": self.std,
            f"{prefix}_min": float(a.min()), f"{prefix}_max": float(a.max()), f"{ratio}_cv": self.cv,
            f"{prefix}_iqr": r["iqr"], f"{prefix}_mad": r["mad"], f"{ratio}_cv_trimmed": r["cv_trimmed"],
            f"{ratio}_outliers": int(r["outliers"]),
        }
        if self.rounds:
            out[f"{prefix}_rounds"] = self.round_medians
            out[f"{ratio}_round_spread"] = self.round_spread
        return out
