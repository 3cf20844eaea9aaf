"""Paired re-timing of two runs' rows: an ONNX row from its cached artifact, a torch row from the run's kept copy of its
entrypoint; where each side is found, why one cannot be re-timed, and one end-to-end re-timing of both through
``compare`` and ``check --baseline``."""

import json
import shutil

import pytest

from optbench.check import check_run
from optbench.cli import main
from optbench.measure.verdict import LatencyVerdict
from optbench.run.retime import Retimer, locate
from optbench.store import final_rows

MODEL = """\
import torch


def build():
    torch.manual_seed(0)
    return torch.nn.Sequential(*[torch.nn.Linear(128, 128) for _ in range(%d)]).eval()
"""
# the same spec text in two folders: the same variant ids, two models (the entrypoint's file is in the identity);
# the runs judge without timing (their rows hold no rounds), a re-timing times at these settings all the same
SPEC = """\
name: retime
model: {source: python, entrypoint: "model.py:build"}
inputs: [{name: x, shape: [batch, 128], dtype: float32}]
data: {source: synthetic, calibration: 8, eval: 16}
variants: {precision: [fp32], batch_size: [1]}
backends: [{name: onnxruntime, threads: 1}, {name: torch, device: cpu, threads: 1}]
measure: {mode: judge, warmup_s: 0.01, min_iters: 5, min_duration_s: 0.05, rounds: 3, processes: 1}
"""


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A baseline run of a one-layer model and a candidate run of a sixteen-layer one, under the same ids."""
    root = tmp_path_factory.mktemp("retime")
    runs = []
    for name, layers in (("base", 1), ("cand", 16)):
        folder = root / name
        folder.mkdir()
        (folder / "model.py").write_text(MODEL % layers)
        (folder / "spec.yaml").write_text(SPEC)
        assert main(["run", str(folder / "spec.yaml"), "--run-dir", str(folder / "run"), "--quiet",
                     "--no-report"]) == 0
        runs.append(folder / "run")
    return runs


def _row(run, backend="onnxruntime"):
    (row,) = [r for r in final_rows(run).values() if r["backend"] == backend]
    return row


def test_each_side_is_its_own_cached_artifact(two_runs):
    base, cand = two_runs
    a, b = locate(base, _row(base)), locate(cand, _row(cand))
    assert not isinstance(a, str) and not isinstance(b, str), (a, b)
    assert a.artifact != b.artifact and a.artifact.parent.parent == b.artifact.parent.parent  # one cache, two files
    assert a.variant["id"] == b.variant["id"] == _row(cand)["variant_id"] and a.variant["options"]["threads"] == 1


def test_a_side_that_cannot_be_re_timed_keeps_the_verdict_and_says_why(two_runs, tmp_path, capsys):
    base, cand = two_runs
    row = _row(cand)
    assert "records no artifact file" in locate(cand, {**row, "artifact": None})
    assert "is gone" in locate(cand, {**row, "artifact": str(tmp_path / "model.onnx")})
    moved = tmp_path / "moved"
    shutil.copytree(cand, moved, ignore=shutil.ignore_patterns("work"))
    assert locate(moved, row) == "the run directory no longer holds work/prepare.json, work/data.npz"
    other = tmp_path / "other-runtime"
    shutil.copytree(cand, other)
    env = json.loads((other / "env.json").read_text())
    env["libraries"]["onnxruntime"] = env["runtimes"]["onnxruntime"] = "0.0.1"
    (other / "env.json").write_text(json.dumps(env))
    assert "the run used 0.0.1" in locate(other, row)
    assert main(["check", str(moved), "--baseline", str(base), "--retime"]) in (0, 1)
    out = capsys.readouterr().out
    assert "not re-timed: candidate: the run directory no longer holds work/prepare.json" in out


def test_a_torch_row_is_rebuilt_from_the_runs_kept_copy_of_its_entrypoint(two_runs, tmp_path):
    from optbench.cache import ArtifactCache
    from optbench.digest import weights_digest
    from optbench.run.kept import rebuilt_module

    base, cand = two_runs
    side = locate(cand, _row(cand, "torch"))
    assert not isinstance(side, str), side
    assert side.rebuilt and side.variant["backend_name"] == "torch"
    # the copy lies in the artifact cache under its content's key, and holds the sixteen-layer file the run read
    assert side.artifact.parent.parent == side.cache_dir and side.artifact.name == "model.py"
    assert side.artifact.read_text() == MODEL % 16 != locate(base, _row(base, "torch")).artifact.read_text()
    prepared = json.loads((cand / "work" / "prepare.json").read_text())
    record = prepared["entrypoint"]
    assert (record["function"], record["kwargs"], record["seed"]) == ("build", {}, 0)
    # the user's file changes after the run (the usual reason to compare): the copy still builds the run's module
    folder = cand.parent
    (folder / "model.py").write_text(MODEL % 2)
    try:
        module = rebuilt_module(prepared, ArtifactCache(side.cache_dir))
    finally:
        (folder / "model.py").write_text(MODEL % 16)
    assert len(module) == 16 and weights_digest(module) == record["weights"]


def test_a_torch_row_that_cannot_be_rebuilt_keeps_the_verdict_and_says_why(two_runs, tmp_path):
    from optbench.cache import ArtifactCache
    from optbench.run.kept import rebuilt_module

    base, cand = two_runs
    row = _row(cand, "torch")

    def edited(name, change):
        run = tmp_path / name
        shutil.copytree(cand, run)
        prepared = json.loads((run / "work" / "prepare.json").read_text())
        change(prepared)
        (run / "work" / "prepare.json").write_text(json.dumps(prepared))
        return run, prepared

    old, _ = edited("old", lambda p: p.pop("entrypoint"))
    assert locate(old, row) == "its backend runs the torch module, and the run kept no copy of its entrypoint " \
                               "(made before runs kept one)"
    gone, _ = edited("gone", lambda p: p["entrypoint"].update(kept=str(tmp_path / "nowhere" / "model.py")))
    assert locate(gone, row).endswith("is gone (the artifact cache was cleared)")
    trains, _ = edited("trains", lambda p: p["entrypoint"].update(kept=None, why="its entrypoint trains the model"))
    assert locate(trains, row) == "its backend runs the torch module, which cannot be rebuilt: its entrypoint " \
                                  "trains the model"
    # a module the copy does not build again as the run had it is refused in the re-timing process
    other, prepared = edited("other", lambda p: p["entrypoint"].update(weights="0" * 16))
    with pytest.raises(RuntimeError, match="has other weights than the run's"):
        rebuilt_module(prepared, ArtifactCache(locate(other, row).cache_dir))
    noisy = LatencyVerdict("inconclusive", 1.0, 0.2, "noise 20.0% > effect 5%")
    v = Retimer(other, base, 0.05, pairs=6, seed=0)(row, _row(base, "torch"), noisy)
    assert v.word == "inconclusive" and v.pairs == () and v.reason.startswith("noise 20.0% > effect 5%; not re-timed: ")
    assert "re-timing process failed" in v.reason and "has other weights than the run's" in v.reason, v.reason


def test_a_decided_verdict_is_kept_and_a_run_is_not_re_timed_against_itself(two_runs):
    base, cand = two_runs
    same = LatencyVerdict("same", 1.0, 0.01, "difference +0.2%")
    assert Retimer(cand, base, 0.05)(_row(cand), _row(base), same) is same  # only inconclusive ones, unless always
    noisy = LatencyVerdict("inconclusive", 1.0, 0.2, "noise 20.0% > effect 5%")
    v = Retimer(base, base, 0.05, always=True)(_row(base), _row(base), noisy)
    assert v.word == "inconclusive" and v.reason == "noise 20.0% > effect 5%; not re-timed: both sides are the same run"


def test_an_artifact_the_ledger_does_not_vouch_for_is_not_re_timed(two_runs, tmp_path):
    base, cand = two_runs
    side = locate(base, _row(base))
    copy = tmp_path / "cache"
    shutil.copytree(side.artifact.parent.parent, copy)  # outside this user's ledger: not known to have been built here
    moved = copy / side.artifact.parent.name / side.artifact.name
    assert "not in this user's ledger" in locate(base, {**_row(base), "artifact": str(moved)})


def test_the_history_gate_re_times_against_the_latest_comparable_run_still_there(two_runs, tmp_path):
    pytest.importorskip("sqlalchemy", reason="the history needs SQLAlchemy (pip install -e '.[history]')")
    from optbench.history.store import History
    from optbench.run.retime import against_history, history_baseline

    base, cand = two_runs
    h = History(f"sqlite:///{tmp_path / 'history.sqlite'}")
    gone = tmp_path / "gone"
    shutil.copytree(base, gone, ignore=shutil.ignore_patterns("work"))
    for run in (base, gone, cand):  # in this order: the copy without work/ is the latest before the candidate
        h.import_run(run)
    assert history_baseline(h, cand, _row(cand)) == (base.resolve(), _row(base))
    h2 = History(f"sqlite:///{tmp_path / 'history2.sqlite'}")
    for run in (gone, cand):
        h2.import_run(run)
    why = history_baseline(h2, cand, _row(cand))
    assert why.startswith(f"the latest comparable run ({gone.resolve()}): the run directory no longer holds work/")
    noisy = LatencyVerdict("inconclusive", None, None, "1 comparable run(s) before this one (at least 3 needed)")
    kept = against_history(h2, cand, _row(cand), noisy, 0.05)
    assert kept.word == "inconclusive" and kept.reason.startswith("1 comparable run(s) before this one (at least 3 "
                                                                  "needed); not re-timed: the latest comparable run")


def test_usage_errors_are_one_line(two_runs, capsys):
    base, cand = two_runs
    assert main(["check", str(cand), "--retime"]) == 2
    assert main(["check", str(cand), "--baseline", str(base), "--pairs", "3"]) == 2
    assert main(["compare", str(base), str(cand), "--retime", "--no-retime"]) == 2
    err = capsys.readouterr().err
    assert "give --baseline RUN or --history N" in err and "--pairs takes 8 to 50 pairs" in err and "exclude each other" in err


@pytest.mark.slow
@pytest.mark.serial
def test_compare_and_check_re_time_both_artifacts_alternately(two_runs, tmp_path, capsys):
    base, cand = two_runs
    out = tmp_path / "cmp.csv"
    assert main(["compare", str(base), str(cand), "--retime", "--pairs", "8", "--format", "csv", "-o", str(out)]) == 0
    import pandas as pd

    rows = pd.read_csv(out).to_dict("records")
    assert len(rows) == 2  # the ONNX Runtime row from its cached file, the torch row rebuilt from the kept copy
    for row in rows:
        pairs = json.loads(row["pairs"])
        assert len(pairs) == 8 and {p["first"] for p in pairs} <= {"baseline", "candidate"}, row["reason"]
        assert row["ratio"] > 1 and all(p["baseline_ms"] > 0 for p in pairs)  # sixteen layers against one
        # a paired verdict is slower here, or inconclusive where the machine was busy (a shared machine): too many
        # pairs beside other load, or a pair left out so that fewer than 8 quiet ones cannot reach 99 %; never same
        busy = "machine busy during the re-timing" in row["reason"] or "left out: busy machine" in row["reason"]
        assert (row["mark"] == "slower" and 1 < row["interval_low"] <= row["ratio"] <= row["interval_high"]) or \
            (row["mark"] == "inconclusive" and busy), row["reason"]
    report = check_run(cand, base, retime="always", pairs=8)
    latency = [r for r in report.results if r.check == "latency"]
    assert len(latency) == 2
    for r in latency:
        assert len(r.pairs) == 8 and "re-timed in" in r.message
        assert (r.verdict == "slower" and r.interval[0] > 1 and "paired (interval" in r.message) or \
            (r.verdict == "inconclusive" and ("machine busy during the re-timing" in r.message
                                             or "left out: busy machine" in r.message)), r.message


def test_a_row_that_ran_a_file_its_backend_made_is_re_timed_from_the_file_it_was_made_from(tmp_path):
    """OpenVINO int8 of an ONNX file: the row's artifact is the int8 IR it ran, which the backend makes again from
    the ONNX it consumed; re-timing (and deploy) hand the backend that ONNX, never the IR as if it were one."""
    from optbench.run.retime import _recorded

    onnx, ir = tmp_path / "model.onnx", tmp_path / "int8" / "model.xml"
    ir.parent.mkdir()
    onnx.write_bytes(b"onnx")
    ir.write_text("<net/>")
    assert _recorded({"artifact": str(ir), "settings": {"built_from": str(onnx)}}) == onnx
    assert _recorded({"artifact": str(onnx), "settings": {}}) == onnx
