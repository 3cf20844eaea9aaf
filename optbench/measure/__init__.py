"""Measurement: timing harness, statistics, drift, memory. Only this package reads a clock."""

from optbench.measure.drift import drift_metrics
from optbench.measure.stats import Measurement
from optbench.measure.timing import measure_rounds, measure_session, timed

__all__ = ["Measurement", "drift_metrics", "measure_rounds", "measure_session", "timed"]
