"""Isolation of crashing, hanging and over-allocating variants; kill -9 and --resume; the artifact cache."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import optbench
from optbench.cli import main
from tests.conftest import PLAIN_TORCH, write_spec

FAULTY = """\
name: faulty
model: {source: python, entrypoint: "tests/models/faulty.py:build"}
inputs: [{name: x, shape: [batch, 4]}]
data: {source: synthetic, calibration: 8, eval: 10}
variants: {batch_size: [1, 2, 3, 4, 5]}
backends: [{name: torch, device: cpu}]
measure: {warmup_s: 0.0, min_iters: 60, min_duration_s: 0.0, timeout_s: 12, memory_limit_mb: 2048}
"""


@pytest.mark.slow  # end-to-end sweeps with injected faults
def test_each_kind_of_fault_costs_only_its_variant(tmp_path, cache_dir):
    run = tmp_path / "run"
    assert main(["run", str(write_spec(tmp_path, FAULTY)), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    df = optbench.load_results(run).set_index("batch_size")
    assert len(df) == 5
    assert df.loc[1, "status"] == "ok" and df.loc[1, "latency_ms_p50"] > 0
    assert df.loc[2, "status"] == "failed" and df.loc[2, "signal"] == "SIGSEGV"
    assert "SIGSEGV" in df.loc[2, "error"]
    assert "Fatal Python error: Segmentation fault" in df.loc[2, "error"]  # faulthandler's stack in the tail
    assert df.loc[3, "status"] == "timeout" and "timed out after 12 s" in df.loc[3, "error"]
    assert df.loc[4, "status"] == "failed" and "MemoryError" in df.loc[4, "error"]
    assert df.loc[5, "status"] == "failed" and "injected failure during measurement" in df.loc[5, "error"]


SLOWISH = """\
name: resume
model: {source: python, entrypoint: "tests/models/faulty.py:build_plain"}
inputs: [{name: x, shape: [batch, 4]}]
data: {source: synthetic, calibration: 8, eval: 8}
variants: {batch_size: [1, 6, 7, 8, 9, 10]}
backends: [{name: torch, device: cpu}, onnxruntime]
measure: {warmup_s: 0.0, min_iters: 5, min_duration_s: 1.5}
"""


def _rows(run):
    path = run / "results.jsonl"
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow  # end-to-end sweeps with injected faults
def test_kill_9_then_resume_gives_one_row_per_variant(tmp_path, cache_dir):
    spec = write_spec(tmp_path, SLOWISH)
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "optbench", "run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while len(_rows(run)) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    written = len(_rows(run))
    assert 3 <= written < 12
    with open(run / "results.jsonl", "a") as f:
        f.write('{"variant_id": "torn')  # as if killed mid-write
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]) == 2  # refuses without --resume
    assert main(["run", str(spec), "--run-dir", str(run), "--resume", "--quiet", "--no-report"]) == 0
    ids = [json.loads(line)["variant_id"] for line in _rows(run)]
    planned = json.loads((run / "plan.json").read_text())
    assert sorted(ids) == sorted(planned) and len(ids) == len(set(ids)) == 12
    assert (optbench.load_results(run).status == "ok").all()
    # a changed spec cannot resume into this directory
    changed = write_spec(tmp_path, SLOWISH.replace("[1, 6, 7, 8, 9, 10]", "[1, 6]"), "changed.yaml")
    assert main(["run", str(changed), "--run-dir", str(run), "--resume", "--quiet"]) == 2
    # a rerun of the same model and variants builds nothing (timed briefly: the builds are what is checked)
    again = tmp_path / "again"
    assert main(["run", str(spec), "--run-dir", str(again), "--quiet", "--no-report",
                 "--set", "measure.min_duration_s=0"]) == 0
    ort = optbench.load_results(again)
    ort = ort[ort.backend == "onnxruntime"]
    assert ort.settings.map(lambda s: s.get("export_cached")).all()


def test_entrypoint_failures_are_one_line_errors(tmp_path, capsys, cache_dir):
    for name, fragment in (("build_raises", "the entrypoint raised RuntimeError: the entrypoint itself fails"),
                           ("build_not_module", "must return a torch.nn.Module")):
        spec = write_spec(tmp_path, FAULTY.replace("faulty.py:build", f"faulty.py:{name}"), f"{name}.yaml")
        run = tmp_path / name
        assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and fragment in lines[0] and "Traceback" not in lines[0]
        assert not (run / "results.jsonl").exists()


PLAIN_CAPPED = PLAIN_TORCH.replace("min_duration_s: 0.0}", "min_duration_s: 0.0, memory_limit_mb: 2048}")


@pytest.mark.slow  # a fresh interpreter and a torch sweep
def test_the_memory_cap_counts_from_the_jobs_libraries_whatever_the_forkserver_preloaded(tmp_path):
    # a process whose first sweep imported no torch keeps that forkserver: a later torch job under an address-space
    # cap must load torch before the cap, never fail to map it
    assert "memory_limit_mb: 2048" in PLAIN_CAPPED
    spec, run = write_spec(tmp_path, PLAIN_CAPPED), tmp_path / "run"
    script = ("import sys\n"
              "from optbench.run.supervise import warm_forkserver\n"
              "warm_forkserver(['optbench.run.worker'])\n"
              "from optbench.cli import main\n"
              f"sys.exit(main(['run', {str(spec)!r}, '--run-dir', {str(run)!r}, '--quiet', '--no-report']))\n")
    env = {**os.environ, "OPTBENCH_HISTORY": "off"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    row = optbench.load_results(run).iloc[0]
    assert row.status == "ok", row.error
    assert row.latency_ms_p50 > 0
