"""Helpers for a user's own test suite: run a spec or load a run, assert its budgets, export for pytest-benchmark.

    from optbench.testing import assert_budgets, run_spec

    def test_model_quality(tmp_path):
        run = run_spec("experiments/quickstart.yaml", tmp_path / "run")
        assert_budgets(run, overrides={"int8": {"top1_min": 0.97}})
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

import optbench.clock as clock
from optbench.check import check_run


def run_spec(spec_path: str | Path, run_dir: str | Path, *, force: bool = True, quiet: bool = True) -> Path:
    """Run a spec into ``run_dir`` (overwriting it by default) and return the run directory."""
    from optbench.run.sweep import RunOptions, run_sweep
    from optbench.specfile.load import load_spec

    spec = load_spec(spec_path)
    return run_sweep(spec, RunOptions(run_dir=Path(run_dir), spec_path=Path(spec_path), force=force, quiet=quiet))


def assert_budgets(run_dir: str | Path, *, baseline: str | Path | None = None, overrides: dict | None = None,
                   min_effect: float | None = None) -> None:
    """Raise ``AssertionError`` listing every violation (variant, metric, value, budget, passing setting)."""
    report = check_run(Path(run_dir), Path(baseline) if baseline else None, overrides or {}, min_effect=min_effect)
    if report.violations:
        lines = [f"{r.variant}: {r.check}: {r.message}" for r in report.violations]
        raise AssertionError(f"{len(lines)} budget violation(s) in {run_dir}:\n  " + "\n  ".join(lines))


def to_pytest_benchmark(run_dir: str | Path, path: str | Path) -> Path:
    """Write the run's ok rows in pytest-benchmark's JSON format (``pytest-benchmark compare`` reads it): a
    benchmark per variant grouped by model and point (batch, shape), items/s in ``extra_info``, the machine as
    py-cpuinfo described it when the run was made, the installed pytest-benchmark's version."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    from optbench.store import final_rows

    run_dir = Path(run_dir)
    env = json.loads((run_dir / "env.json").read_text())
    benches = []
    for vid, row in final_rows(run_dir).items():
        if row.get("status") != "ok" or not row.get("samples_ms"):
            continue
        shape = "x".join(f"{k}{v}" for k, v in (row.get("shape") or {}).items())
        group = f"{row.get('model')} bs{row.get('batch_size')}" + (f" {shape}" if shape else "")
        benches.append({
            "group": group, "name": vid, "fullname": f"optbench::{row.get('model')}::{vid}",
            "params": None, "param": None,
            "extra_info": {**{k: row.get(k) for k in ("backend", "device", "precision", "transform", "batch_size",
                                                       "throughput_items_s", "drift_rel_l2", "task_accuracy")},
                           "items_per_s": row.get("throughput_items_s"), "items_per_call": row.get("batch_size"),
                           "round_medians_ms": row.get("latency_ms_rounds"), "busy": row.get("busy")},
            "options": {"disable_gc": False, "timer": "perf_counter", "min_rounds": len(row["samples_ms"]),
                        "max_time": 0, "min_time": 0, "warmup": True},
            "stats": _stats(np.asarray(row["samples_ms"]) / 1000.0),
        })
    try:
        bench_version = version("pytest-benchmark")
    except PackageNotFoundError:  # the file format is that of pytest-benchmark 4/5, which read it
        bench_version = "5.1.0"
    cpu = env.get("cpuinfo") if isinstance(env.get("cpuinfo"), dict) and "error" not in env.get("cpuinfo", {}) else \
        {"brand_raw": env.get("cpu")}
    doc = {
        "machine_info": {"node": env.get("hostname"), "processor": env.get("cpu"), "machine": cpu.get("arch") or platform.machine(),
                         "python_implementation": "CPython", "python_version": env.get("python"),
                         "system": "Linux" if str(env.get("platform", "")).startswith("Linux") else env.get("platform"),
                         "release": env.get("platform"), "cpu": cpu, "gpus": env.get("gpus", [])},
        "commit_info": {"id": env.get("commit"), "dirty": str(env.get("commit", "")).endswith("-dirty")},
        "benchmarks": benches,
        "datetime": clock.iso_utc(),
        "version": bench_version,
    }
    Path(path).write_text(json.dumps(doc, indent=2))
    return Path(path)


def _stats(s: np.ndarray) -> dict:
    q1, med, q3 = np.percentile(s, [25, 50, 75])
    iqr = q3 - q1
    mean, std = float(s.mean()), float(s.std(ddof=1)) if s.size > 1 else 0.0
    lo, hi = s[s >= q1 - 1.5 * iqr].min(), s[s <= q3 + 1.5 * iqr].max()
    iqr_out = int(((s < q1 - 1.5 * iqr) | (s > q3 + 1.5 * iqr)).sum())
    std_out = int(((s < mean - std) | (s > mean + std)).sum())
    return {"min": float(s.min()), "max": float(s.max()), "mean": mean, "stddev": std, "rounds": int(s.size),
            "median": float(med), "iqr": float(iqr), "q1": float(q1), "q3": float(q3),
            "iqr_outliers": iqr_out, "stddev_outliers": std_out, "outliers": f"{std_out};{iqr_out}",
            "ld15iqr": float(lo), "hd15iqr": float(hi), "ops": 1.0 / mean if mean else 0.0,
            "total": float(s.sum()), "iterations": 1, "data": [float(x) for x in s]}
