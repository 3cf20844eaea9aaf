"""Hostile inputs, round 3: each defect found, held to what it now does (one clear line and exit 2, or the run
completing correctly)."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from optbench.cli import main
from tests.conftest import TINY

ROOT = Path(__file__).resolve().parents[1]


def _procs_with(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (everything a run started inherits it)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            if marker.encode() in (d / "environ").read_bytes():
                status = (d / "status").read_text()
                if "\nState:\tZ" not in status:  # a zombie is gone already (its parent has not reaped it)
                    found.append(int(d.name))
        except OSError:
            continue
    return found


HANG = """\
import os
import time
from pathlib import Path

import torch


class Hang(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x):
        if x.shape[0] == 3:  # only the variant's own batches: the reference and the reading run at other sizes
            Path(os.environ["HANG_MARKER"]).write_text(str(os.getpid()))  # the test waits for this, not a clock
            time.sleep(1000)
        return self.lin(x)


def build(train=None, seed=0):
    return Hang()
"""


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_a_killed_driver_leaves_no_process_lock_or_folder_behind(tmp_path):
    (tmp_path / "hang.py").write_text(HANG)
    (tmp_path / "spec.yaml").write_text("""\
name: hang
model: {source: python, entrypoint: "hang.py:build"}
inputs: [{name: x, shape: [batch, 4]}]
data: {source: synthetic, calibration: 8, eval: 8}
variants: {precision: [fp32], batch_size: [3]}
backends: [torch]
measure: {timeout_s: 120, rounds: 1, processes: 1}
""")
    marker = f"OPTBENCH_TEST_RUN={uuid.uuid4().hex}"
    # the run's TMPDIR short: the forkserver's socket lives there, and an AF_UNIX path has ~107 bytes (pytest-xdist's
    # tmp_path alone can pass that)
    locks, tmp = tmp_path / "locks", Path(tempfile.mkdtemp(prefix="ob-"))
    locks.mkdir()
    hanging = tmp_path / "hanging"
    env = {**os.environ, "OPTBENCH_LOCK_DIR": str(locks), "TMPDIR": str(tmp), marker.split("=")[0]: marker.split("=")[1],
           "HANG_MARKER": str(hanging)}
    driver = subprocess.Popen([sys.executable, "-m", "optbench", "run", str(tmp_path / "spec.yaml"), "--run-dir",
                               str(tmp_path / "run"), "--no-report", "--quiet"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=open(tmp_path / "stderr.txt", "w"))  # noqa: SIM115
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not hanging.exists():  # the variant's worker is in its hang then
        assert driver.poll() is None, "the run ended before its variant started: " + \
            (tmp_path / "stderr.txt").read_text()[-2000:]
        time.sleep(0.2)
    assert hanging.exists(), "the variant never reached its hang"
    assert len(_procs_with(marker)) >= 2  # the driver and its worker (and the forkserver)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _procs_with(marker):
        time.sleep(0.5)
    assert _procs_with(marker) == [], "processes outlived the killed driver"
    with open(locks / "room.lock", "a+") as room:
        fcntl.flock(room, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free: nobody holds the node's timing window
    assert not list(tmp.glob("optbench-job-*"))
    shutil.rmtree(tmp, ignore_errors=True)


def test_a_metric_hook_writing_into_its_reference_changes_nothing(tmp_path):
    from optbench.measure.tasks import TaskContext, evaluate
    from optbench.spec.models import CustomTask

    (tmp_path / "m.py").write_text("def bad(out, ref, labels):\n    ref[...] = 1.0\n    out[...] = 1.0\n"
                                   "    return {'same': float((out == ref).all())}\n")
    ref = np.random.default_rng(0).normal(size=(4, 3))
    keep = ref.copy()
    m = evaluate(CustomTask(kind="custom", metric="m.py:bad"), ref + 0.1, ref, None, TaskContext(spec_dir=tmp_path))
    assert m["x_same"] == 1.0 and np.array_equal(ref, keep)


def test_a_ledger_other_users_can_write_is_refused(tmp_path, capsys):
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    ledger.chmod(0o777)
    (tmp_path / "spec.yaml").write_text(TINY)
    old = os.environ.get("OPTBENCH_LEDGER")
    os.environ["OPTBENCH_LEDGER"] = str(ledger)
    try:
        assert main(["run", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    finally:
        os.environ.pop("OPTBENCH_LEDGER") if old is None else os.environ.__setitem__("OPTBENCH_LEDGER", old)
    err = capsys.readouterr().err
    assert "writable by other users (mode 777)" in err and f"chmod go-w {ledger}" in err
    assert len(err.strip().splitlines()) == 1


def test_a_cached_artifact_in_a_folder_others_can_write_is_refused(tmp_path):
    from optbench.cache import ArtifactCache, CacheIntegrityError

    cache = ArtifactCache(tmp_path / "cache")
    path, _ = cache.get_or_build(cache.key("t", 1), "a.txt", lambda d: (d / "a.txt").write_text("x"))
    cache.verify(path)  # this user's, private: loads
    path.parent.chmod(0o777)
    with pytest.raises(CacheIntegrityError, match="writable by other users"):
        cache.verify(path)


def test_every_output_ignored_is_an_error_not_a_vacuous_pass(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(TINY + "outputs: [{name: output, ignore: true}]\n")
    assert main(["run", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    assert "every output is ignored" in capsys.readouterr().err


EXTRA = """\
import torch


class Extra(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 2)

    def forward(self, x):
        y = self.lin(x)
        return {"y": y, "extra": y * 2} if x.shape[0] == 3 else {"y": y}


def build(train=None, seed=0):
    return Extra()
"""


def test_an_output_only_some_batch_sizes_return_fails_its_variant(tmp_path):
    (tmp_path / "m.py").write_text(EXTRA)
    (tmp_path / "spec.yaml").write_text("""\
name: extra
model: {source: python, entrypoint: "m.py:build"}
inputs: [{name: x, shape: [batch, 4]}]
data: {source: synthetic, calibration: 8, eval: 8}
variants: {precision: [fp32], batch_size: [2, 3]}
backends: [torch]
measure: {warmup_s: 0.01, min_iters: 3, min_duration_s: 0.01, rounds: 1, processes: 1}
""")
    main(["run", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report"])
    rows = {r["batch_size"]: r for r in (json.loads(x) for x in (tmp_path / "run" / "results.jsonl")
                                          .read_text().splitlines() if x.strip())}
    assert rows[2]["status"] == "ok"
    assert rows[3]["status"] == "failed" and "output 'extra' is not one the model returned when optbench read " \
        "it (outputs ['y']): an output that exists at some batch sizes only cannot be judged" in rows[3]["error"]


def test_detection_parts_named_must_exist():
    from optbench.measure.tasks import TaskContext, evaluate
    from optbench.spec.models import DetectionTask

    pred = np.random.default_rng(0).uniform(0, 1, (2, 7, 50)).astype(np.float32)
    parts = {"box": (0, 0, 4), "cls": (0, 4, 7)}
    with pytest.raises(ValueError, match="boxes names part 'boxes', which the output does not have"):
        evaluate(DetectionTask(kind="detection", top_k=5), pred, pred, None, TaskContext(), parts)
    with pytest.raises(ValueError, match="scores names part 'score'"):
        evaluate(DetectionTask(kind="detection", top_k=5, scores="score"), pred, pred, None, TaskContext(), {})
    ok = evaluate(DetectionTask(kind="detection", top_k=5, boxes="box", scores="cls"), pred, pred, None,
                  TaskContext(), parts)
    assert ok["det_f1"] == 1.0


def test_csv_cells_a_spreadsheet_would_run_are_made_text():
    import pandas as pd

    from optbench.store import csv_text

    df = pd.DataFrame({"variant_id": ["a"], "worst_output": ["=cmd|' /C calc'!A0"], "x": [-1.5],
                       "outputs": [{"=cmd": {"drift_rel_l2": 0.1}}]})
    text = csv_text(df)
    assert "'=cmd|' /C calc'!A0" in text and ",-1.5," in text
    assert not any(cell.startswith("=") for line in text.splitlines() for cell in line.split(","))


def test_a_bad_ray_address_is_one_line_before_anything_runs(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(TINY)
    t0 = time.monotonic()
    assert main(["run", str(tmp_path / "spec.yaml"), "--executor", "ray", "--address", "not-an-address",
                 "--run-dir", str(tmp_path / "run")]) == 2
    assert time.monotonic() - t0 < 10 and not (tmp_path / "run").exists()
    assert "is not a Ray cluster address" in capsys.readouterr().err


def test_bool_outputs_are_never_read_as_class_scores():
    from optbench.outputs import default_task

    labels = np.arange(4)
    assert default_task("python", np.zeros((4, 3), bool), labels) is None
    assert default_task("python", np.zeros((4, 3), np.float32), labels) is not None


def test_check_on_a_build_directory_has_nothing_to_check(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.jsonl").write_text(json.dumps({"variant_id": "v", "status": "built"}) + "\n")
    (run / "plan.json").write_text(json.dumps(["v"]))
    assert main(["check", str(run)]) == 2
    assert "nothing to check" in capsys.readouterr().err


def test_a_huge_sweep_is_asked_for(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(TINY.replace("batch_size: [1]", f"batch_size: {list(range(1, 602))}"))
    assert main(["run", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run"), "--quiet"]) == 2
    assert "plans 601 variants" in capsys.readouterr().err and not (tmp_path / "run").exists()
    assert main(["plan", str(tmp_path / "spec.yaml")]) == 0
    assert "`run` asks for --max-variants 601" in capsys.readouterr().out


def test_non_finite_numbers_are_strict_json_and_read_back(tmp_path):
    from optbench.store import append_row, read_rows

    append_row(tmp_path, {"variant_id": "v", "x_metric": float("nan"), "outputs": {"y.z": {"d": float("inf")}}})
    line = (tmp_path / "results.jsonl").read_text()
    json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in results.jsonl"))
    (row,) = read_rows(tmp_path)
    assert np.isnan(row["x_metric"]) and row["outputs"]["y.z"]["d"] == float("inf")


def test_a_runaway_log_is_cut_back(tmp_path, monkeypatch):
    from optbench.run import supervise

    monkeypatch.setattr(supervise, "LOG_CAP_BYTES", 1000)
    monkeypatch.setattr(supervise, "LOG_KEEP_BYTES", 100)
    log = tmp_path / "v.log"
    log.write_text("x" * 5000)
    supervise._cap_log(log)
    text = log.read_text()
    assert text.startswith("x" * 100) and "was cut" in text and len(text) < 300


def test_absurd_measure_settings_are_refused(tmp_path, capsys):
    (tmp_path / "spec.yaml").write_text(TINY.replace("warmup_s: 0.01", "warmup_s: 1e9"))
    assert main(["plan", str(tmp_path / "spec.yaml")]) == 2
    assert "warmup_s" in capsys.readouterr().err


def test_a_failing_postprocess_hook_is_named(tmp_path):
    from optbench.measure.drift import HookError, judge_outputs
    from optbench.measure.tasks import TaskContext
    from optbench.outputs import View

    (tmp_path / "h.py").write_text("def broken(a):\n    raise KeyError('logits')\n")
    y = np.zeros((4, 3), np.float32)
    with pytest.raises(HookError, match=r"the postprocess hook h.py:broken failed: KeyError"):
        judge_outputs({"y": y}, {"y": y}, [View("y", "y", postprocess="h.py:broken")], None,
                      TaskContext(spec_dir=tmp_path))


def test_constraints_on_text_columns_and_underscored_numbers_are_refused():
    import pandas as pd

    from optbench.check import parse_overrides
    from optbench.errors import OptbenchError
    from optbench.report.decide import decisions, parse_constraint

    df = pd.DataFrame({"status": ["ok"], "backend": ["onnxruntime"], "latency_ms_p50": [1.0], "batch_size": [1],
                       "shape_label": ["-"], "variant_id": ["v"], "precision": ["fp32"], "transform": ["none"]})
    with pytest.raises(OptbenchError, match="holds text, not numbers"):
        decisions(df, {}, [parse_constraint("backend <= 5")], "torch")
    with pytest.raises(OptbenchError, match="expected a number"):
        parse_overrides(["top1_min=1_0"])
    with pytest.raises(OptbenchError):
        parse_constraint("latency_ms_p99 <= 1_0")
