"""What a newcomer meets in the first hour: a build that times nothing waits for no timing window, lock messages
name who holds the lock."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from optbench.run.node_locks import Exclusive

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "experiments" / "models" / "digits.onnx"


@pytest.mark.slow  # a worker pool's start: ~25 s on a shared 2-core machine
def test_build_takes_no_timing_lock(tmp_path):
    locks = tmp_path / "locks"
    locks.mkdir()
    room = open(locks / "room.lock", "a+")  # noqa: SIM115
    fcntl.flock(room, fcntl.LOCK_EX)  # another run's CPU timing window, held for as long as the build runs
    try:
        proc = subprocess.run([sys.executable, "-m", "optbench", "build", str(MODEL), "--precision", "fp32",
                               "--batch", "1", "--run-dir", str(tmp_path / "run")], cwd=ROOT, capture_output=True,
                              text=True, env={**os.environ, "OPTBENCH_LOCK_DIR": str(locks)}, timeout=240)
    finally:
        fcntl.flock(room, fcntl.LOCK_UN)
        room.close()
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert [r["status"] for r in rows] == ["built"], rows
    assert "waiting for" not in proc.stderr


def test_lock_holders_name_someone(tmp_path):
    other = os.getppid()  # a live process other than this one
    (tmp_path / f"holder-{other}").write_text("")  # a note another process has opened and not written yet
    assert Exclusive(root=tmp_path).holders() == []
    (tmp_path / f"holder-{other}").write_text("optbench run other-run, its variant (pid 1)")
    assert Exclusive(root=tmp_path).holders() == ["optbench run other-run, its variant (pid 1)"]


def test_a_lock_note_is_written_whole(tmp_path):
    excl = Exclusive(root=tmp_path, label="optbench run mine, v")
    with open(tmp_path / "gate.lock", "a+") as f:
        excl._lock(f, fcntl.LOCK_EX)
    assert (tmp_path / f"holder-{os.getpid()}").read_text() == f"optbench run mine, v (pid {os.getpid()})"
    assert not list(tmp_path.glob(".holder-*"))


def _row(vid: str, precision: str, p50: float, **extra) -> dict:
    return {"variant_id": vid, "status": "ok", "backend": "onnxruntime", "backend_name": "onnxruntime",
            "device": "cpu", "precision": precision, "transform": "none", "int8": None, "fp16": None, "batch_size": 1,
            "shape": {}, "latency_ms_p50": p50, "latency_ms_rounds": [p50] * 3, "busy": None, "warnings": [],
            "reference": "onnxruntime fp32 cpu", "reference_backend": "onnxruntime", "drift_rel_l2": 1e-3,
            "worst_output": "logits", "throughput_items_s": 1000 / p50, **extra}


def test_the_ship_line_says_why_the_fastest_was_passed_over():
    import pandas as pd

    from optbench.report.build import enrich
    from optbench.report.decide import decisions

    rows = [_row("onnxruntime.fp32.none.bs1", "fp32", 10.0), _row("onnxruntime.fp16.none.bs1", "fp16", 6.0),
            _row("onnxruntime.int8.none.bs1", "int8", 2.0, drift_rel_l2=0.1)]
    failing = {"onnxruntime.int8.none.bs1": ["drift_rel_l2 = 0.1 > budget 0.01"]}
    (d,) = decisions(enrich(pd.DataFrame(rows), spread_warn=0.05), failing, [], "onnxruntime", spread_warn=0.05)
    line = d["sentence"]
    assert "ship onnxruntime.fp16.none.bs1" in line, line
    assert "Faster but passed over: onnxruntime.int8.none.bs1 (2 ms): drift_rel_l2 = 0.1 > budget 0.01." in line, line


def test_the_run_table_carries_the_verdict_and_folds_the_skipped():
    import pandas as pd

    from optbench.commands.run import _run_table

    skipped = [{"variant_id": f"torch.int8.{t}.bs1", "status": "skipped", "error": "torch runs no int8"}
               for t in ("none", "pruned")] + \
              [{"variant_id": "onnxruntime.bf16.none.bs1", "status": "skipped", "error": "no bf16 kernels"}]
    rows = skipped + [_row("onnxruntime.fp32.none.bs1", "fp32", 10.0), _row("onnxruntime.int8.none.bs1", "int8", 2.0)]
    text = _run_table(pd.DataFrame(rows), {"onnxruntime.int8.none.bs1": ["drift_rel_l2 = 0.1 > budget 0.01"]})
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["variant_id", "status", "verdict"]
    (int8,) = [x for x in lines if x.startswith("onnxruntime.int8")]
    assert int8.split()[1:4] == ["ok", "fail:", "drift_rel_l2"], int8
    (fp32,) = [x for x in lines if x.startswith("onnxruntime.fp32")]
    assert fp32.split()[1:3] == ["ok", "pass"], fp32
    assert not any(x.startswith(("torch.int8", "onnxruntime.bf16")) for x in lines), text
    assert lines[-1].startswith("3 skipped: 2 x torch runs no int8; 1 x no bf16 kernels"), text


def test_the_run_says_its_skipped_variants_in_one_line(capsys):
    from optbench.run.progress import Progress

    progress = Progress(total=5)
    for reason in ("torch runs no int8", "torch runs no int8", "no bf16 kernels"):
        progress.skip(reason)
    progress.said_skipped()
    progress.show("onnxruntime.fp32.none.bs1")
    progress.step("onnxruntime.fp32.none.bs1", "ok", ran=True)
    progress.finish()
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "3 of 5 variants skipped: 2 x torch runs no int8; 1 x no bf16 kernels (`optbench plan` lists them)"
    assert err[1:] == ["[4/5] running onnxruntime.fp32.none.bs1"] + [err[2]] and err[2].startswith(
        "[4/5] onnxruntime.fp32.none.bs1: ok"), err


def test_explain_takes_a_unique_part_of_a_variant_id(tmp_path):
    from optbench.errors import OptbenchError
    from optbench.explain.variant import resolve_variant, row_of

    ids = ["onnxruntime.fp32.none.bs1-48d5360d", "onnxruntime.int8-minmax-pc-u8.none.bs1-4720e5c8",
           "onnxruntime.int8-minmax-pc-u8.none.bs32-4720aa00"]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps({"variant_id": v, "status": "ok"}) + "\n" for v in ids))
    assert resolve_variant(tmp_path, "4720e5") == ids[1]  # a hash prefix
    assert resolve_variant(tmp_path, "48d5360d") == ids[0]  # the hash
    assert resolve_variant(tmp_path, "int8-minmax-pc-u8.none.bs32") == ids[2]  # the id without its hash
    assert row_of(tmp_path, "4720e5")["variant_id"] == ids[1]
    with pytest.raises(OptbenchError, match="'4720' names 2 variants"):
        resolve_variant(tmp_path, "4720")
    with pytest.raises(OptbenchError, match="has no variant 'ffff'"):
        row_of(tmp_path, "ffff")


def test_report_says_each_step_on_stderr(tmp_path, capsys):
    """A report of a large run takes tens of seconds: each step is one line on stderr as it starts."""
    import shutil

    from optbench.cli import main

    run = tmp_path / "run"
    shutil.copytree(ROOT / "results" / "reference" / "cpu-2core-vm" / "serving-cpu", run)
    capsys.readouterr()
    assert main(["report", str(run), "-o", str(tmp_path / "r.html"), "--no-explain"]) == 0
    out, err = capsys.readouterr()
    assert out.strip() == str(tmp_path / "r.html")
    assert err.splitlines() == [f"reading {run}", "drawing the plots", "reading the run history",
                                f"writing {tmp_path / 'r.html'}"], err


@pytest.mark.slow  # imports every installed runtime: about a minute on a shared 2-core machine
def test_env_deep_says_each_probe_on_stderr_and_keeps_json_clean():
    from optbench.backends import all_backends

    proc = subprocess.run([sys.executable, "-m", "optbench", "env", "--deep", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    env = json.loads(proc.stdout)  # stdout is the JSON alone
    steps = [x for x in proc.stderr.splitlines() if x.startswith("[")]
    backends = [x for x in steps if " backend " in x]
    assert len(backends) == len(all_backends()) == len(env["backends"]), proc.stderr
    assert backends[0].startswith(f"[1/{len(backends)}] backend ")
    assert len([x for x in steps if " model source " in x]) == len(env["sources"]), proc.stderr


def test_the_run_time_peak_leaves_out_what_built_the_artifact():
    """int8 calibration ran in the variant's process before its session loaded: "host RSS Δ" counted it (536 MiB at
    batch 1, where the artifact was calibrated, 159 MiB at batch 4 from the cache). The peak restarts once the
    artifact is ready, and the delta counts from there."""
    import numpy as np

    from optbench.measure.memory import current_rss_bytes, peak_rss_since_restart, restart_peak_rss

    build = np.ones(256 * 2**20 // 8)  # what a calibration holds, freed before the variant runs
    build[::4096] = 2.0
    del build
    if restart_peak_rss() is None:
        pytest.skip("this kernel does not let a process restart its peak resident size")
    peak = peak_rss_since_restart()
    assert peak is not None and peak < current_rss_bytes() + 64 * 2**20, (peak, current_rss_bytes())
    run = np.ones(32 * 2**20 // 8)  # what the variant holds while it runs is counted
    run[::4096] = 2.0
    assert peak_rss_since_restart() >= peak + 16 * 2**20
    del run


@pytest.mark.slow  # a run of two variants with its worker pool: ~30 s on a shared 2-core machine
def test_host_rss_delta_of_a_calibrated_int8_row_is_its_sessions(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "optbench", "run", str(MODEL), "--precision", "fp32,int8", "--batch",
                           "1", "--set", "measure.mode=judge", "--run-dir", str(run), "--no-history", "--no-report",
                           "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = {r["variant_id"].split(".")[1]: r for r in map(json.loads, (run / "results.jsonl").read_text().splitlines())}
    fp32, int8 = rows["fp32"], rows["int8-minmax-pc-u8"]
    assert int8["settings"]["host_memory"].startswith("host RSS delta: the peak above the"), int8["settings"]
    # calibrating the digits CNN peaks near 500 MiB in the worker; its int8 session holds about what fp32's does
    assert int8["rss_delta_bytes"] < fp32["rss_delta_bytes"] + 100 * 2**20, (int8["rss_delta_bytes"],
                                                                               fp32["rss_delta_bytes"])

def _points():
    import pandas as pd

    rows = []
    for i, series in enumerate(["onnxruntime fp32", "onnxruntime fp16", "onnxruntime int8", "openvino fp32"]):
        for b in (1, 8, 32):
            p50 = (1 + 0.05 * i) * (0.5 + 0.1 * b)  # close series: bands and points that overlap
            rows.append({"series": series, "batch_size": b, "latency_ms_p50": p50, "latency_ms_p90": p50 * 1.2,
                         "latency_ms_p99": p50 * 1.5, "throughput_items_s": 1000 * b / p50})
    return pd.DataFrame(rows)


@pytest.fixture
def figures(monkeypatch):
    """The plot functions hand back their figure instead of its SVG."""
    import optbench.report.plots as plots

    kept = []
    monkeypatch.setattr(plots, "_uri", lambda fig: kept.append(fig) or "uri")
    return kept


def test_latency_bands_are_told_apart_and_batch_labels_do_not_overlap(figures):
    import optbench.report.plots as plots

    ok = _points()
    colour = plots.colours(ok["series"])
    plots.latency_vs_batch(ok, colour)
    plots.throughput_vs_latency(ok, colour)
    bands_fig, knee_fig = figures
    (ax,) = bands_fig.axes
    bands = [c for c in ax.collections if c.get_hatch()]
    assert len(bands) == 4 and len({c.get_hatch() for c in bands}) == 4  # a pattern per series, not one wash
    assert all(c.get_facecolor()[0][3] <= 0.1 for c in bands)
    (ax,) = knee_fig.axes
    assert not ax.texts  # "bs32" written beside each series' point overlapped where the series meet
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"batch 1", "batch 8", "batch 32"} <= set(labels), labels


def test_plots_come_before_the_long_tables(tmp_path):
    import shutil

    from optbench.report.render import write_report

    run = tmp_path / "run"
    shutil.copytree(ROOT / "results" / "reference" / "cpu-2core-vm" / "serving-cpu", run)
    html = write_report(run, tmp_path / "r.html", explain=False).read_text()
    assert 'id="plots"' in html and html.index('id="plots"') < html.index('id="summary"')


_FORKED = """
import sys
from pathlib import Path

from optbench.run.supervise import _context, worker_preload
from optbench.specfile.load import load_spec


def torch_loaded(queue):
    queue.put("torch" in sys.modules)


if __name__ == "__main__":
    ctx = _context(worker_preload(load_spec(Path(sys.argv[1]))))
    queue = ctx.Queue()
    p = ctx.Process(target=torch_loaded, args=(queue,))
    p.start()
    print(queue.get(timeout=120))
    p.join()
"""


@pytest.mark.slow  # 20-70 s on two cores
def test_an_onnx_only_sweep_forks_its_workers_from_a_server_without_torch(tmp_path):
    script = tmp_path / "forked.py"
    script.write_text(_FORKED)
    proc = subprocess.run([sys.executable, str(script), str(ROOT / "experiments" / "quickstart-onnx.yaml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["False"], proc.stdout


def test_a_torch_model_preloads_torch_for_its_reference():
    from optbench.run.supervise import worker_preload
    from optbench.specfile.load import load_spec

    preload = worker_preload(load_spec(ROOT / "experiments" / "quickstart.yaml"))
    assert "torch" in preload and "onnxruntime" in preload
    onnx_only = worker_preload(load_spec(ROOT / "experiments" / "quickstart-onnx.yaml"))
    assert "onnxruntime" in onnx_only and not any(m.split(".")[0] in ("torch", "torch_pruning") for m in onnx_only)
