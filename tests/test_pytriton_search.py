"""The real-server benchmark's peak search (benchmarks/pytriton_serving.py) on a server model with a known
capacity: perf_analyzer's measurement replaced by the model's answer, the search itself as it runs."""

import argparse
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def bench():
    spec = importlib.util.spec_from_file_location("pytriton_serving", ROOT / "benchmarks/pytriton_serving.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def server(capacity: float):
    """A server that keeps up with any rate up to ``capacity`` at p99 5 ms and falls behind beyond it."""
    def measure(a, work, mode, tag):
        rate = float(mode[mode.index("--request-rate-range") + 1].split(":")[0])
        return {"items_s": min(rate, capacity), "p99_ms": 5.0 if rate <= capacity else 80.0}
    return measure


@pytest.mark.parametrize("capacity", [1500.0, 2600.0, 3400.0])
def test_peak_search_brackets_the_capacity_whichever_side_the_first_probe_lands(bench, monkeypatch, tmp_path, capacity):
    monkeypatch.setattr(bench, "measure", server(capacity))
    a = argparse.Namespace(p99_ms=15.0, tolerance=0.05, probes=12)
    best, probes = bench.peak_search(a, tmp_path, offline=3000.0)
    assert probes[0]["target_qps"] == 2100  # the search starts at 0.7 of the offline figure
    assert best is not None and 0.95 * capacity <= best["target_qps"] <= capacity
    failed = [p["target_qps"] for p in probes if not p["passed"]]
    assert failed and min(failed) - best["target_qps"] <= 0.05 * best["target_qps"] + 1  # bracketed from above


def test_peak_search_reports_no_peak_when_nothing_passes(bench, monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "measure", server(0.0))
    best, probes = bench.peak_search(argparse.Namespace(p99_ms=15.0, tolerance=0.05, probes=6), tmp_path, 3000.0)
    assert best is None and len(probes) == 6 and not any(p["passed"] for p in probes)
