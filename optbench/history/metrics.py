"""The metrics a history shows: the names a user types, the row column each reads, and a row's value of it (the
latency level as the gate reads it: the median of the quiet rounds)."""

from __future__ import annotations

import math

import numpy as np

# metric names a user types -> the row column (latency: the level of the quiet rounds, as the gate reads it)
METRICS = {"p50": "latency", "p99": "latency_ms_p99", "throughput": "throughput_items_s",
           "memory": "peak_rss_bytes", "gpu_memory": "gpu_peak_bytes", "drift": "drift_rel_l2",
           "accuracy": "task_accuracy"}


def value_of(row: dict, column: str) -> float | None:
    """A row's value of ``column``; ``latency`` is the median of the quiet rounds (the latency gate's level)."""
    if row.get("status") != "ok":
        return None
    if column == "latency":
        from optbench.measure.verdict import quiet, rounds_of

        if row.get("latency_ms_p50") is None:
            return None
        try:
            level = float(np.median(quiet(rounds_of(row).medians)))
        except (TypeError, ValueError, KeyError, AttributeError):  # a row stored before imports were checked
            return None
        return level if math.isfinite(level) else None
    v = row.get(column)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


# what each metric's values are, said where they are shown ('p50' is what a user types; the value is the level)
SHOWN = {"p50": "latency level, ms: each run's median of its quiet rounds (the fastest third of its round medians, "
                "as the latency gate reads it), not the p50 of its samples",
         "p99": "p99 latency, ms", "throughput": "throughput, items/s", "memory": "host peak RSS, bytes",
         "gpu_memory": "GPU peak memory, bytes", "drift": "drift, rel. L2 of the worst output",
         "accuracy": "task accuracy"}


def shown(metric: str) -> str:
    """What the values of ``metric`` are, in words (a row column: its name)."""
    return SHOWN.get(metric, f"the row column {metric}")


def column_of(metric: str) -> str:
    return METRICS.get(metric, metric)
