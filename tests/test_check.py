"""optbench check: budgets, planted drift, planted slowdown, jitter, JUnit, pytest helpers."""

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from optbench.check import check_run, parse_overrides, passing_setting
from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.testing import assert_budgets, to_pytest_benchmark


def _copy(run, tmp_path, name, edit):
    dst = tmp_path / name
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("work", "logs"))
    rows = [json.loads(line) for line in (dst / "results.jsonl").read_text().splitlines()]
    rows = [edit(r) for r in rows]
    (dst / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return dst


def _steady(r):
    """Rounds of a quiet machine: the test runs' own rounds are a few ms each and as noisy as the machine."""
    if r.get("samples_ms"):
        r["latency_ms_rounds"] = [r["latency_ms_p50"] * (1 + 0.002 * i) for i in range(5)]
        r["busy"] = None
        r["timing_processes"] = 3  # rounds over as many worker processes as the gate needs
    return r


def _one_process(r):
    r = _steady(r)
    r["timing_processes"] = 1
    return r


def _scale(factor, seed=0):
    rng = np.random.default_rng(seed)

    def edit(r):
        if r.get("samples_ms"):
            if factor is None:  # 1 % jitter
                r["latency_ms_rounds"] = [s * (1 + rng.uniform(-0.01, 0.01)) for s in r["latency_ms_rounds"]]
            else:
                r["latency_ms_rounds"] = [s * factor for s in r["latency_ms_rounds"]]
        return r
    return edit


def test_check_passes_on_the_run(small_run, capsys):
    assert main(["check", str(small_run)]) == 0
    assert "0 violation(s)" in capsys.readouterr().out


def test_planted_drift_fails_naming_the_variant(small_run, tmp_path, capsys):
    victim = {}

    def edit(r):
        if r["status"] == "ok" and r["precision"] == "int8" and not victim:
            victim["id"] = r["variant_id"]
            r["top1_agreement"] = 0.90
            for metrics in r["outputs"].values():  # the verdict is per output; the flat column is the worst
                metrics["top1_agreement"] = 0.90
        return r
    bad = _copy(small_run, tmp_path, "drift", edit)
    assert main(["check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"FAIL {victim['id']}: top1_min: top1_agreement = 0.9 < budget 0.98" in out
    assert "would pass with top1_min=0.9" in out


def test_planted_slowdown_fails_and_jitter_passes(small_run, tmp_path, capsys):
    base = _copy(small_run, tmp_path, "steady", _steady)
    slow = _copy(base, tmp_path, "slow", _scale(1.3))
    assert main(["check", str(slow), "--baseline", str(base)]) == 1
    out = capsys.readouterr().out
    assert "latency: slower: p50 1.300x the baseline" in out and "would pass with --min-effect 0.30" in out
    jitter = _copy(base, tmp_path, "jitter", _scale(None))
    assert main(["check", str(jitter), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "latency: 18 same, 0 faster, 0 slower, 0 inconclusive" in out


def test_one_process_a_side_is_inconclusive_below_the_process_shift(small_run, tmp_path, capsys):
    """Rows timed in one worker process (the default) cannot see between-process shifts: a 1.3x difference is
    inconclusive and says how to settle it; a 2x one is still slower."""
    base = _copy(small_run, tmp_path, "one", _one_process)
    slow = _copy(base, tmp_path, "one-slow", _scale(1.3))
    assert main(["check", str(slow), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "0 slower, 18 inconclusive" in out and "Set measure.processes: 3 in both runs" in out
    assert main(["check", str(slow), "--baseline", str(base), "--strict"]) == 1
    twice = _copy(base, tmp_path, "one-twice", _scale(2.0))
    assert main(["check", str(twice), "--baseline", str(base)]) == 1
    assert "latency: 0 same, 0 faster, 18 slower" in capsys.readouterr().out


def test_busy_and_noisy_candidates_are_inconclusive_and_fail_only_under_strict(small_run, tmp_path, capsys):
    base = _copy(small_run, tmp_path, "steady", _steady)

    def busy(r):
        if r.get("samples_ms"):
            r["busy"] = "other processes used 1.90 of 2 CPUs"
            r["latency_ms_rounds"] = [s * 2 for s in r["latency_ms_rounds"]]
        return r
    loaded = _copy(base, tmp_path, "busy", busy)
    assert main(["check", str(loaded), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "latency: 0 same, 0 faster, 0 slower, 18 inconclusive" in out
    assert "machine busy while the candidate was timed (other processes used 1.90 of 2 CPUs)" in out
    assert main(["check", str(loaded), "--baseline", str(base), "--strict"]) == 1
    assert main(["check", str(loaded), "--baseline", str(base), "--min-effect", "nan"]) == 2
    assert main(["check", str(loaded), "--strict"]) == 2


def test_other_hardware_makes_latency_a_warning(small_run, tmp_path, capsys):
    base = _copy(small_run, tmp_path, "steady", _steady)
    slow = _copy(base, tmp_path, "slow2", _scale(1.3))
    env = json.loads((slow / "env.json").read_text())
    env["cpu"] = "Some Other CPU"
    (slow / "env.json").write_text(json.dumps(env))
    assert main(["check", str(slow), "--baseline", str(base)]) == 0
    out = capsys.readouterr().out
    assert "WARN" in out and "baseline ran elsewhere" in out
    assert main(["check", str(slow), "--baseline", str(base), "--strict-env"]) == 1


def test_failed_variant_is_a_violation_unless_optional(small_run, tmp_path):
    def edit(r):
        if r["variant_id"].startswith("onnxruntime.fp32.none.bs1-"):
            r.update(status="failed", error="boom")
        return r
    bad = _copy(small_run, tmp_path, "failed", edit)
    report = check_run(bad)
    assert [v.variant for v in report.violations if v.check == "status"]
    spec = (bad / "spec.yaml").read_text().replace("optional: []", "optional: ['onnxruntime.fp32.none.bs1-*']")
    (bad / "spec.yaml").write_text(spec)
    assert not check_run(bad).violations


def test_budget_override_and_usage_errors(small_run, capsys):
    assert main(["check", str(small_run), "--budget", "top1_min=1.01"]) == 1
    assert main(["check", str(small_run), "--budget", "top1_mn=0.5"]) == 2
    assert "did you mean 'top1_min'" in capsys.readouterr().err
    assert main(["check", "/nonexistent/run"]) == 2
    with pytest.raises(OptbenchError):
        parse_overrides(["top1_min"])
    assert parse_overrides(["int8.top1_min=0.9"]) == {"int8": {"top1_min": 0.9}}


def test_junit_lists_one_case_per_variant_and_budget(small_run, tmp_path):
    path = tmp_path / "junit.xml"
    assert main(["check", str(small_run), "--junit", str(path)]) == 0
    suite = ET.parse(path).getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) > 0
    ok_variants = {c.get("classname") for c in cases if c.get("name") == "status"}
    assert len(ok_variants) == len({c.get("classname") for c in cases})
    assert {"status", "top1_min"} <= {c.get("name") for c in cases}
    assert suite.get("name") == "optbench.small"  # the spec's name, not the run folder's ("run")
    status_times = [float(c.get("time")) for c in cases if c.get("name") == "status"]
    assert all(t > 0 for t in status_times) and abs(float(suite.get("time")) - sum(status_times)) < 0.01


def test_pytest_helpers(small_run, tmp_path):
    assert_budgets(small_run)
    with pytest.raises(AssertionError, match="top1_min"):
        assert_budgets(small_run, overrides={"*": {"top1_min": 1.5}})
    doc = json.loads(to_pytest_benchmark(small_run, tmp_path / "bench.json").read_text())
    b = doc["benchmarks"][0]
    assert {"min", "max", "mean", "stddev", "median", "rounds", "iqr", "ops"} <= set(b["stats"])
    assert b["stats"]["median"] < 1.0  # seconds
    from importlib.metadata import version

    assert doc["version"] == version("pytest-benchmark")
    assert doc["machine_info"]["cpu"]["brand_raw"] and "arch" in doc["machine_info"]["cpu"]
    groups = {x["group"] for x in doc["benchmarks"]}
    assert len(groups) == 2 and all(g.endswith((" bs1", " bs16")) for g in groups)
    assert all(x["extra_info"]["items_per_s"] > 0 for x in doc["benchmarks"])


def test_passing_suggestion_is_round_and_passes():
    assert passing_setting(0.962, "min") == "0.96"
    assert passing_setting(0.0123, "max") == "0.013"
