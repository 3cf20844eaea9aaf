"""The run history against hostile directories and databases: an import never overwrites another run's rows, every
file of an imported directory is checked, a database that is locked, read-only, foreign or malformed is one line
(or, for a run, skipped with a warning), reading commands write nothing, the password is never printed, and JSON
out is strict."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("sqlalchemy", reason="the history needs SQLAlchemy (pip install -e '.[history]')")

from optbench.cli import main  # noqa: E402
from optbench.history.store import History, run_uid  # noqa: E402
from optbench.store import append_row  # noqa: E402
from tests.conftest import TINY, write_spec  # noqa: E402

ENV = {"cpu": "Test CPU", "cpu_count": 2, "gpus": [], "python": "3.11", "libraries": {"onnxruntime": "1.32.0"}}


def _row(vid: str, level: float) -> dict:
    rounds = [level * (1 + 0.01 * k) for k in range(3)]
    return {"variant_id": vid, "status": "ok", "latency_ms_p50": level, "latency_ms_rounds": rounds,
            "probe_us_rounds": [4.0] * 3, "timing_window": [1000.0, 1001.0], "throughput_items_s": 1000 / level}


def _run_dir(root: Path, name: str, level: float = 2.0) -> Path:
    d = root / name
    d.mkdir()
    append_row(d, _row("v.fp32", level))
    (d / "env.json").write_text(json.dumps(ENV))
    (d / "spec.yaml").write_text("name: safety\n")
    run_uid(d)
    return d


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err


def _stored_p50(db: str) -> dict[str, float]:
    """The stored p50 of v.fp32 per run directory."""
    h = History(db)
    return {h.run_of(p.uid)["run_dir"]: p.row["latency_ms_p50"] for p in h.points("safety")["v.fp32"]}


# ---------------------------------------------------------------- import: identity
def test_an_import_never_overwrites_another_runs_rows(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    real = _run_dir(tmp_path, "real", 2.0)
    assert main(["history", "import", str(real), "--db", db]) == 0
    copy = shutil.copytree(real, tmp_path / "copy")  # cp -r, then rows forged: the uid file comes along
    (copy / "results.jsonl").unlink()
    append_row(copy, _row("v.fp32", 8e-06))
    forged = tmp_path / "forged"
    forged.mkdir()
    append_row(forged, _row("v.fp32", 9e-06))
    (forged / "spec.yaml").write_text("name: safety\n")
    (forged / "history.json").write_text((real / "history.json").read_text())  # another run's uid, carried
    capsys.readouterr()
    for d in (copy, forged, copy, real):  # imported twice: still one run each
        assert main(["history", "import", str(d), "--db", db]) == 0
    out = capsys.readouterr().out
    assert out.count("stored as a run of its own") == 3
    assert _stored_p50(db) == {str(real.resolve()): 2.0, str(copy.resolve()): 8e-06, str(forged.resolve()): 9e-06}
    assert History(db).counts() == (3, 3)


# ---------------------------------------------------------------- import: hostile files
def _hostile(tmp_path: Path, kind: str) -> Path:
    d = _run_dir(tmp_path, kind)
    if kind == "spec-a-list":
        (d / "spec.yaml").write_text("- a\n- b\n")
    elif kind == "env-bad-json":
        (d / "env.json").write_text("{not json")
    elif kind == "env-a-list":
        (d / "env.json").write_text("[1, 2]")
    elif kind == "spec-python-tag":
        (d / "spec.yaml").write_text("name: !!python/object/apply:os.system ['touch PYTAG']\n")
    elif kind == "env-dev-zero":
        (d / "env.json").unlink()
        (d / "env.json").symlink_to("/dev/zero")
    elif kind == "results-fifo":
        (d / "results.jsonl").unlink()
        os.mkfifo(d / "results.jsonl")
    return d


@pytest.mark.parametrize("kind", ["spec-a-list", "env-bad-json", "env-a-list", "spec-python-tag", "env-dev-zero",
                                  "results-fifo"])
def test_a_hostile_run_directory_is_one_line(tmp_path, kind, capsys):
    d = _hostile(tmp_path, kind)
    assert main(["history", "import", str(d), "--db", str(tmp_path / "h.sqlite")]) == 2
    assert str(d) in _one_line_error(capsys)
    assert not (tmp_path / "PYTAG").exists() and not (Path.cwd() / "PYTAG").exists()


def test_bad_rows_are_left_out_with_their_reason_and_the_history_still_reads(tmp_path, capsys):
    d = _run_dir(tmp_path, "rows")
    append_row(d, {**_row("strings", 2.0), "timing_window": ["start", "end"]})
    append_row(d, {k: v for k, v in _row("x", 2.0).items() if k != "variant_id"})
    append_row(d, {**_row("words", 2.0), "latency_ms_rounds": ["fast", "slow"]})
    append_row(d, {**_row("records", 2.0), "rounds": ["fast", "slow"]})
    db = str(tmp_path / "h.sqlite")
    assert main(["history", "import", str(d), "--db", db]) == 0
    out = capsys.readouterr().out
    assert "1 rows" in out and out.count("left out line") == 4
    assert "timing_window is not two finite numbers" in out and "no variant_id" in out
    assert "latency_ms_rounds holds values that are not numbers" in out and "rounds holds entries" in out
    assert main(["history", "--db", db]) == 0


def test_a_row_stored_before_imports_were_checked_does_not_break_the_history(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    h = History(db)
    run = h.record_run("old", {"name": "safety"}, ENV, None, "run", started_at=1.0)
    h.record_row(run, {**_row("v.fp32", 2.0), "latency_ms_rounds": ["fast", "slow"]})
    assert main(["history", "--db", db]) == 0


# ---------------------------------------------------------------- databases
def test_history_json_is_strict(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'h.sqlite'}"
    h = History(db)
    for i in range(3):  # a run whose rounds hold a NaN (a row written null with its place in nonfinite)
        run = h.record_run(f"r{i}", {"name": "safety"}, ENV, None, "run", started_at=float(i))
        h.record_row(run, {**_row("v.fp32", 2.0), "latency_ms_rounds": [2.0, float("nan")] if i else [2.0, 2.1]})
    for metric in ("p50", "throughput"):
        assert main(["history", "--db", db, "--format", "json", "--metric", metric]) == 0

        def refuse(name: str):
            raise ValueError(f"{name} in strict JSON")

        (series,) = json.loads(capsys.readouterr().out, parse_constant=refuse)
        assert len(series["points"]) == (1 if metric == "p50" else 3)


def test_env_never_prints_the_database_password(monkeypatch, capsys):
    monkeypatch.setenv("OPTBENCH_HISTORY", "postgresql+psycopg://ci:s3cret-pw@db.example:5432/bench")
    for args in (["env"], ["env", "--json"]):
        assert main(args) == 0
        out = capsys.readouterr().out
        assert "s3cret-pw" not in out and "ci:***@db.example" in out


def test_a_malformed_database_url_is_one_line_before_anything_runs(tmp_path, capsys):
    url = "postgresql+psycopg://ci:s3cret-pw@db.example:notaport/bench"
    assert main(["history", "--db", url]) == 2
    assert "port is not a number" in _one_line_error(capsys)
    spec = write_spec(tmp_path, TINY)
    assert main(["run", str(spec), "--run-dir", str(tmp_path / "run"), "--history-db", url, "--quiet"]) == 2
    err = _one_line_error(capsys)
    assert "port is not a number" in err and "s3cret-pw" not in err and not (tmp_path / "run").exists()


def _sqlite(path: Path, *statements: str) -> Path:
    with sqlite3.connect(path) as c:
        for s in statements:
            c.execute(s)
    return path


@pytest.mark.parametrize("statements, says", [
    (["CREATE TABLE optbench_runs (id INTEGER)"], "no optbench_meta"),
    (["CREATE TABLE optbench_meta (key TEXT, value TEXT)", "INSERT INTO optbench_meta VALUES ('schema', 'one')"],
     "schema value 'one' is not a number"),
])
def test_a_foreign_or_damaged_database_is_one_line(tmp_path, statements, says, capsys):
    db = _sqlite(tmp_path / "other.sqlite", *statements)
    run = _run_dir(tmp_path, "run")
    for args in (["history", "--db", str(db)], ["history", "import", str(run), "--db", str(db)]):
        assert main(args) == 2
        assert says in _one_line_error(capsys)


def test_reading_commands_write_nothing_to_a_file_that_is_not_optbench_s(tmp_path, capsys):
    theirs = _sqlite(tmp_path / "theirs.sqlite", "CREATE TABLE people (name TEXT)")
    before = theirs.read_bytes()
    assert main(["history", "--db", str(theirs)]) == 2
    assert "not optbench's" in _one_line_error(capsys)
    assert theirs.read_bytes() == before
    missing = tmp_path / "nothing-yet.sqlite"
    assert main(["history", "--db", str(missing)]) == 0
    assert "holds no runs yet" in capsys.readouterr().out and not missing.exists()


def test_a_read_only_database_is_one_line(tmp_path, capsys):
    path = tmp_path / "h.sqlite"
    History(f"sqlite:///{path}")  # an optbench database, opened read-only below
    url = f"sqlite:///file:{path}?mode=ro&uri=true"
    assert main(["history", "import", str(_run_dir(tmp_path, "run")), "--db", url]) == 2
    assert "readonly database" in _one_line_error(capsys)


@pytest.mark.parametrize("state", ["locked", "read-only"])
def test_a_run_goes_on_without_a_database_it_cannot_write(tmp_path, monkeypatch, capsys, state):
    """What a run does first with its history (open it, record the run) on a locked or read-only database: a
    warning, and no history for this run (it stopped the run: after 30 s, leaving partial files)."""
    from types import SimpleNamespace

    import optbench.history.store as store
    from optbench.run.sweep import RunOptions, _history_of

    monkeypatch.setattr(store, "LOCK_WAIT_S", 0.2)
    path = tmp_path / "h.sqlite"
    History(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    if state == "locked":
        holder.execute("BEGIN EXCLUSIVE")
    url = str(path) if state == "locked" else f"sqlite:///file:{path}?mode=ro&uri=true"
    (tmp_path / "run").mkdir()
    opts = RunOptions(run_dir=tmp_path / "run", spec_path=tmp_path / "spec.yaml", history=url)
    try:
        assert _history_of(SimpleNamespace(model_dump=lambda mode: {"name": "x"}), opts, ENV) == (None, None)
    finally:
        holder.close()
    err = capsys.readouterr().err
    assert ("database is locked" if state == "locked" else "readonly database") in err
    assert "goes on without it" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # a whole run (~15 s alone, a minute on a busy machine)
def test_a_locked_database_does_not_stop_a_run(tmp_path, monkeypatch, capsys):
    """Another process holds the history for longer than a write waits: the run goes on, said once."""
    import optbench.history.store as store

    monkeypatch.setattr(store, "LOCK_WAIT_S", 0.2)
    path = tmp_path / "h.sqlite"
    History(f"sqlite:///{path}")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        spec = write_spec(tmp_path, TINY)
        code = main(["run", str(spec), "--run-dir", str(tmp_path / "run"), "--history-db", str(path), "--quiet",
                     "--no-report"])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    err = capsys.readouterr().err
    assert code == 0 and "database is locked" in err and "goes on without it" in err
    assert json.loads((tmp_path / "run" / "results.jsonl").read_text().splitlines()[0])["status"] == "ok"
    assert History(f"sqlite:///{path}").counts() == (0, 0)


# ---------------------------------------------------------------- big run directories
def _big_run(root: Path, megabytes: int) -> Path:
    """A run directory whose results.jsonl is ``megabytes`` MB of rows of three variants (1 MB each: a long note),
    the same variants again and again (a long-resumed run)."""
    d = _run_dir(root, "big")
    lines = [json.dumps({**_row(vid, 2.0), "note": vid * (1 << 20)}).encode() + b"\n" for vid in "abc"]
    with open(d / "results.jsonl", "wb") as f:
        for _ in range(megabytes // 3):
            f.writelines(lines)
    return d


BOUNDED = """
import resource, sys
from pathlib import Path
from optbench.cli import main

def commands(run, db):
    return [["check", run], ["compare", run, run], ["history", "import", run, "--db", db],
            ["report", run, "-o", str(Path(run) / "report.html")]]

big, small, db = sys.argv[1:4]
assert [main(c) for c in commands(small, db)] == [0, 0, 0, 0]  # everything imported before the cap
vm = int(next(x for x in open("/proc/self/status") if x.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (96 << 20), resource.RLIM_INFINITY))
print("codes", [main(c) for c in commands(big, db)])
"""


def test_big_results_are_read_row_by_row_under_a_memory_cap(tmp_path):
    """A 120 MB results.jsonl under an address-space cap of 96 MB over what the process has mapped: report,
    check, compare and import read it row by row (reading it whole, as they did, ran out of memory)."""
    import subprocess
    import sys

    big, small = _big_run(tmp_path, 120), _run_dir(tmp_path, "small")
    got = subprocess.run([sys.executable, "-c", BOUNDED, str(big), str(small), str(tmp_path / "h.sqlite")],
                         capture_output=True, text=True, env={**os.environ, "OPTBENCH_HISTORY": "off"},
                         cwd=Path(__file__).parents[1])
    assert "codes [0, 0, 0, 0]" in got.stdout, got.stderr[-2000:]


def test_more_variants_than_a_report_can_show_is_one_line(tmp_path, monkeypatch, capsys):
    import optbench.store as store

    monkeypatch.setattr(store, "MAX_FINAL_ROWS", 3)
    d = _run_dir(tmp_path, "wide")
    for i in range(4):
        append_row(d, _row(f"v{i}", 2.0))
    assert main(["check", str(d)]) == 2
    assert "more than 3 variants" in _one_line_error(capsys)
