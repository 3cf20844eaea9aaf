"""Unit tests of the pieces the run is made of: the row store, how outputs are read, the node locks, the worker's
failure row."""

import json
import math
import multiprocessing as mp
import os
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch

from optbench.errors import RunDirError
from optbench.outputs import concat_items, flatten_torch, item_major, torch_to_numpy
from optbench.store import append_row, csv_text, final_rows, load_results, read_rows, repair_tail, row_json


# ---------------------------------------------------------------- store
def test_rows_round_trip_with_nonfinite_numbers_and_todays_columns(tmp_path):
    append_row(tmp_path, {"variant_id": "a", "status": "ok", "drift_rel_l2": float("nan"),
                          "outputs": {"y": {"drift_max_abs": float("inf")}}, "iterations": np.int64(7)})
    line = (tmp_path / "results.jsonl").read_text()
    assert "NaN" not in line and "Infinity" not in line  # strict JSON
    row = read_rows(tmp_path)[0]
    assert math.isnan(row["drift_rel_l2"]) and row["outputs"]["y"]["drift_max_abs"] == math.inf
    assert row["iterations"] == 7 and isinstance(row["iterations"], int)
    assert row["latency_ms_p50"] is None and "nonfinite" not in row


def test_a_torn_last_line_is_dropped_and_repaired_a_corrupt_middle_one_is_an_error(tmp_path):
    append_row(tmp_path, {"variant_id": "a", "status": "failed"})
    append_row(tmp_path, {"variant_id": "a", "status": "ok"})
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"variant_id": "b", "sta')
    assert [r["status"] for r in read_rows(tmp_path)] == ["failed", "ok"]
    assert final_rows(tmp_path)["a"]["status"] == "ok"  # the last final row of a variant wins
    repair_tail(tmp_path)
    assert (tmp_path / "results.jsonl").read_text().endswith("}\n")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "results.jsonl").write_text('{"variant_id": "a"}\nnot json\n{"variant_id": "b"}\n')
    with pytest.raises(RunDirError, match="corrupt result row"):
        read_rows(bad)


def test_results_load_with_integer_columns_and_csv_cells_cannot_run_as_formulas(tmp_path):
    append_row(tmp_path, {"variant_id": "=cmd|' /C calc'!A0", "status": "ok", "batch_size": 4, "iterations": 10})
    append_row(tmp_path, {"variant_id": "b", "status": "skipped", "batch_size": 1})
    df = load_results(tmp_path)
    assert str(df["batch_size"].dtype) == "Int64" and str(df["iterations"].dtype) == "Int64"
    text = csv_text(df)
    assert "'=cmd" in text and ",=cmd" not in text
    assert row_json({"x": np.float32(1.5)}) == '{"x": 1.5}'


# ---------------------------------------------------------------- outputs
def test_torch_outputs_flatten_in_a_stable_order():
    Pair = namedtuple("Pair", "boxes scores")
    t = torch.zeros(2)
    assert list(flatten_torch(t)) == ["output"]
    assert list(flatten_torch((t, t))) == ["output", "output_1"]
    assert list(flatten_torch({"a": t, "b": {"c": t}})) == ["a", "b.c"]
    assert list(flatten_torch(Pair(t, t))) == ["boxes", "scores"]
    out = torch_to_numpy((torch.ones(2, dtype=torch.float16), torch.tensor([1, 2])))
    assert out["output"].dtype == np.float32 and out["output_1"].dtype == np.int64
    with pytest.raises(TypeError, match="holds no tensor"):
        flatten_torch("text")


def test_outputs_are_read_only_on_the_axis_the_model_showed():
    arr = np.arange(24).reshape(2, 3, 4)  # batch on axis 1
    out = item_major({"y": arr, "c": np.zeros(3), "s": np.ones(5)}, {"y": 1, "c": None, "s": "stack"})
    assert out["y"].shape == (3, 2, 4) and np.array_equal(out["y"][1], arr[:, 1])
    assert "c" not in out and out["s"].shape == (1, 5)
    with pytest.raises(ValueError, match="not one the model returned"):
        item_major({"new": arr}, {"y": 1})
    joined = concat_items([({"y": np.ones((4, 2))}, 4), ({"y": np.zeros((4, 2))}, 1)])
    assert joined["y"].shape == (5, 2) and joined["y"][-1].sum() == 0  # the padded items are cut


# ---------------------------------------------------------------- node locks
def _hold_timing(lock_dir: str, ready, release) -> None:
    os.environ["OPTBENCH_LOCK_DIR"] = lock_dir
    from optbench.run.node_locks import Exclusive

    ex = Exclusive(label="holder run, variant v1")
    ex.build()
    with ex.timing("cpu"):
        ready.set()
        release.wait(30)


def test_a_waiting_process_sees_who_holds_the_window_and_a_dead_holder_is_cleared(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTBENCH_LOCK_DIR", str(tmp_path))
    from optbench.run.node_locks import Exclusive

    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold_timing, args=(str(tmp_path), ready, release))
    p.start()
    try:
        assert ready.wait(60)
        me = Exclusive(label="me", wait_file=tmp_path / "me.waiting")
        assert me.holders() == [f"holder run, variant v1 (pid {p.pid})"]
    finally:
        release.set()
        p.join(30)
    (tmp_path / "holder-999999999").write_text("gone")
    assert me.holders() == [] and not (tmp_path / "holder-999999999").exists()
    me.build()
    with me.timing("cpu"):
        pass
    assert me.building and me.waited_s >= 0


# ---------------------------------------------------------------- the worker
def test_a_worker_job_that_fails_writes_a_failed_row_naming_its_stage(tmp_path):
    from optbench.run.worker import main

    job = {"mode": "variant", "spec": {"name": "x"}, "spec_dir": str(tmp_path), "run_dir": str(tmp_path),
           "cache_dir": str(tmp_path / "cache"), "out": str(tmp_path / "out.json")}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert main([str(tmp_path / "job.json")]) == 3
    result = json.loads(Path(job["out"]).read_text())
    assert result["status"] == "failed" and result["failed_stage"] == "start" and result["user_error"] is True
    assert "model" in result["error"]  # the spec's missing field is named


def test_a_gpu_window_names_the_windows_on_other_gpus_that_overlapped_it(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTBENCH_LOCK_DIR", str(tmp_path))
    from optbench.run.node_locks import Exclusive

    other = 999999
    (tmp_path / "windows.jsonl").write_text("\n".join(json.dumps(w) for w in [
        {"gpu": 1, "start": 10.0, "pid": other, "label": "v-on-1"},
        {"gpu": 1, "start": 10.0, "end": 12.0, "pid": other, "label": "v-on-1"},
        {"gpu": 1, "start": 20.0, "end": 21.0, "pid": other, "label": "later"},
        {"gpu": 0, "start": 11.0, "end": 11.5, "pid": other, "label": "same-gpu"},  # its own GPU's lock: not beside
        {"gpu": 1, "start": 13.5, "pid": other, "label": "still-open"}]) + "\n")
    ex = Exclusive(label="me")
    found = ex.windows_beside(0, 11.0, 14.0)
    assert [(w["label"], w["overlap_s"]) for w in found] == [("v-on-1", 1.0), ("still-open", 0.5)]
    with ex.timing("cuda:0"):  # a real window on GPU 0: written to the ledger, and the open one on GPU 1 beside it
        pass
    assert [w["label"] for w in ex.overlaps] == ["still-open"]
    lines = [json.loads(x) for x in (tmp_path / "windows.jsonl").read_text().splitlines()]
    assert lines[-1]["label"] == "me" and "end" in lines[-1]


def test_the_gate_leaves_out_rounds_that_overlapped_another_gpus_window():
    from optbench.measure.verdict import overlapped_rounds, rounds_of

    rounds = [{"window": [0.0, 1.0]}, {"window": [1.0, 2.0]}, {"window": [2.0, 3.0]}, {"window": [3.0, 4.0]}]
    row = {"latency_ms_rounds": [1.0, 1.5, 1.0, 1.01], "rounds": rounds, "probe_us_rounds": [4, 4, 4, 4],
           "overlapped_windows": [{"start": 1.2, "end": 1.8}]}
    assert overlapped_rounds(row) == {1}
    r = rounds_of(row)
    assert r.medians == [1.0, 1.0, 1.01] and r.busy is None and "left out" in r.note
    row["overlapped_windows"] = [{"start": 0.5, "end": 3.5}]
    assert rounds_of(row).busy and "overlapped" in rounds_of(row).busy  # too few quiet rounds: inconclusive
