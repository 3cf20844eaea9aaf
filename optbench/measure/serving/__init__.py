"""Serving scenarios: latency under load (MLPerf LoadGen), dynamic batching, peak QPS, a concurrency sweep,
energy per item and a soak. Like the rest of :mod:`optbench.measure`, the only code here that reads clocks."""

from optbench.measure.serving.batcher import Batcher, Policy
from optbench.measure.serving.loadgen import LoadSettings, ScenarioResult, run_scenario
from optbench.measure.serving.run import serve, serve_variant

__all__ = ["Batcher", "LoadSettings", "Policy", "ScenarioResult", "run_scenario", "serve", "serve_variant"]
