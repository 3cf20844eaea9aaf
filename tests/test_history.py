"""The run history on SQLite and on a real PostgreSQL server: storage, change points, the history gate, the CLI,
and a consistent database after a kill."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sqlalchemy", reason="the history needs SQLAlchemy (pip install -e '.[history]')")

from optbench.cli import main  # noqa: E402
from optbench.history.changes import change_points  # noqa: E402
from optbench.history.store import History, run_uid  # noqa: E402
from optbench.store import append_row  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PG_BIN = next((Path(p) for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None) \
    if Path("/usr/lib/postgresql").exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres():
    """A private PostgreSQL cluster for this module (Debian's binaries; as root, run as the postgres user, which
    PostgreSQL requires): its SQLAlchemy URL over a Unix socket. Skipped with the reason where it is not
    installed."""
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install -e '.[history]')")
    data = Path(tempfile.mkdtemp(prefix="optbench-pg-", dir="/tmp"))
    as_user: list[str] = []
    if os.getuid() == 0:
        shutil.chown(data, "postgres")
        data.chmod(0o700)
        as_user = ["runuser", "-u", "postgres", "--"]
    port = _free_port()
    subprocess.run([*as_user, str(PG_BIN / "initdb"), "-D", str(data / "db"), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)
    subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-w", "-l", str(data / "log"), "-o",
                    f"-p {port} -k {data} -c listen_addresses=''", "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={data}&port={port}"
    finally:
        subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data / "db"), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(data, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.sqlite'}"
    return request.getfixturevalue("postgres")


def _fresh(url: str) -> History:
    h = History(url)
    with h.engine.begin() as c:  # the module's PostgreSQL is shared: each test starts empty
        c.execute(h.rows.delete())
        c.execute(h.runs.delete())
    return h


ENV = {"cpu": "Test CPU", "cpu_count": 2, "gpus": [], "python": "3.11", "libraries": {"onnxruntime": "1.32.0"},
       "commit": "abc"}


def _row(vid: str, level: float, rng) -> dict:
    rounds = [level * (1 + abs(x)) for x in rng.normal(0, 0.01, 5)]
    return {"variant_id": vid, "status": "ok", "precision": "fp32", "transform": "none", "backend": "onnxruntime",
            "batch_size": 1, "timing_processes": 3, "latency_ms_p50": float(np.median(rounds)),
            "latency_ms_rounds": rounds, "probe_us_rounds": [4.0] * 5, "throughput_items_s": 1000 / level,
            "drift_rel_l2": float("nan") if vid.endswith("nan") else 1e-6}


def _fill(h: History, levels: list[float], env=ENV, spec="trend", seed=0) -> None:
    rng = np.random.default_rng(seed)
    for i, level in enumerate(levels):
        run_id = h.record_run(f"{spec}-{seed}-{i}", {"name": spec}, env, None, "run", started_at=1000.0 + i)
        h.record_row(run_id, _row("v.fp32", level, rng))


def test_the_detector_finds_a_planted_step_and_nothing_in_a_flat_series():
    for seed in range(10):
        rng = np.random.default_rng(seed)
        flat = 2.0 * (1 + rng.normal(0, 0.02, 30))
        step = flat.copy()
        step[20:] *= 1.12
        found = change_points(step)
        assert len(found) == 1 and abs(found[0].index - 20) <= 1 and found[0].ratio == pytest.approx(1.12, abs=0.03)
        assert change_points(flat) == []


def test_history_stores_runs_and_finds_the_step(db, capsys):
    h = _fresh(db)
    _fill(h, [2.0] * 20 + [2.24] * 10)
    _fill(h, [3.0] * 30, spec="flat", seed=1)
    assert h.counts() == (60, 60)
    assert main(["history", "--db", db, "--spec", "trend"]) == 0
    out = capsys.readouterr().out
    assert "run 20:" in out and "+12" in out
    # it says what it shows: whose database, and that 'p50' is the quiet rounds' level, not the samples' p50
    assert out.startswith(f"history {db.split('://')[0]}://") and "(every run of this account on this machine)" in out.splitlines()[0]
    assert "history of latency level, ms: each run's median of its quiet rounds" in out.splitlines()[1]
    assert main(["history", "--db", db, "--spec", "flat", "--format", "json"]) == 0
    (series,) = json.loads(capsys.readouterr().out)
    assert len(series["points"]) == 30 and series["steps"] == []


def test_series_never_cross_machines_or_library_versions(db, capsys):
    h = _fresh(db)
    other = {**ENV, "cpu": "Another CPU"}
    _fill(h, [2.0] * 10, spec="m")
    _fill(h, [2.6] * 10, env=other, spec="m", seed=5)  # slower machine: a new series, not a step
    assert main(["history", "--db", db, "--spec", "m", "--format", "json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert sorted(s["machine"][:10] for s in found) == ["Another CP", "Test CPU x"]
    assert all(s["steps"] == [] for s in found)


def _run_dir(tmp_path: Path, name: str, level: float, seed: int) -> Path:
    d = tmp_path / name
    d.mkdir()
    append_row(d, _row("v.fp32", level, np.random.default_rng(seed)))
    (d / "env.json").write_text(json.dumps(ENV))
    (d / "spec.yaml").write_text("name: gate\n")
    (d / "plan.json").write_text(json.dumps(["v.fp32"]))
    run_uid(d)
    return d


def test_check_gates_against_the_last_n_runs(db, tmp_path, capsys):
    h = _fresh(db)
    for i in range(5):
        h.import_run(_run_dir(tmp_path, f"base{i}", 2.0, i))
    slow = _run_dir(tmp_path, "slow", 2.6, 10)
    same = _run_dir(tmp_path, "same", 2.0, 11)
    h.import_run(slow)  # a run already in the history is judged against the runs before it, not itself
    assert main(["check", str(slow), "--history", "5", "--history-db", db]) == 1
    assert "history latency: slower" in capsys.readouterr().out
    assert main(["check", str(same), "--history", "5", "--history-db", db]) == 0
    assert main(["check", str(same), "--history", "2", "--history-db", db]) == 2


def test_one_process_runs_are_held_to_the_gates_process_rule():
    from optbench.history.trends import history_verdict
    from optbench.measure.verdict import Rounds

    past = [2.0, 2.02, 1.98, 2.01, 1.99]
    word, why = history_verdict(Rounds([2.6, 2.61, 2.62]), past, 0.05, processes=1)
    assert word == "inconclusive" and "measure.processes: 3" in why
    assert history_verdict(Rounds([2.6, 2.61, 2.62]), past, 0.05, processes=3)[0] == "slower"
    assert history_verdict(Rounds([4.0, 4.01, 4.02]), past, 0.05, processes=1)[0] == "slower"  # beyond 60 %
    assert history_verdict(Rounds([2.05, 2.06, 2.04]), past, 0.05, processes=1)[0] == "same"


@pytest.mark.slow  # a real sweep, killed and resumed
def test_a_run_is_recorded_as_it_goes_and_a_kill_leaves_whole_rows(db, tmp_path):
    """A real sweep writes each row in its own transaction; kill -9 mid-sweep leaves the database consistent
    with results.jsonl (SQLite and PostgreSQL), and --resume appends to the same run."""
    _fresh(db)
    (tmp_path / "spec.yaml").write_text(f"""\
name: live
model: {{source: python, entrypoint: "{ROOT / 'experiments' / 'models' / 'digits.py'}:build", kwargs: {{epochs: 1, width: 8}}}}
inputs: [{{name: image, shape: [batch, 1, 8, 8], dtype: float32}}]
data: {{source: digits, calibration: 32, eval: 64}}
variants: {{precision: [fp32, int8], batch_size: [1, 2, 4]}}
backends: [onnxruntime]
measure: {{warmup_s: 0.01, min_iters: 5, min_duration_s: 0.3, rounds: 2, processes: 1}}
""")
    env = {**os.environ, "OPTBENCH_HISTORY": db}
    cmd = [sys.executable, "-m", "optbench", "run", str(tmp_path / "spec.yaml"), "--run-dir", str(tmp_path / "run"),
           "--quiet", "--no-report"]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = tmp_path / "run" / "results.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and (not results.exists() or len(results.read_text().splitlines()) < 2):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    h = History(db)
    if db.startswith("sqlite"):
        with h.engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    with h.engine.connect() as c:  # every stored row whole: it parses, and names its variant
        for vid, text in c.execute(h.rows.select().with_only_columns(h.rows.c.variant_id, h.rows.c.row)):
            assert json.loads(text)["variant_id"] == vid
    written = {json.loads(x)["variant_id"] for x in results.read_text().splitlines() if x.strip()}
    stored = h.points("live")
    assert set(stored) <= written and len(written) - len(stored) <= 1  # the row being written: in the file first
    if set(stored) == written:  # make the gap whatever the kill's timing: a row in the file only
        with h.engine.begin() as c:
            c.execute(h.rows.delete().where(h.rows.c.variant_id == sorted(written)[0]))
    assert subprocess.run([*cmd, "--resume"], cwd=ROOT, env=env, capture_output=True).returncode == 0
    assert h.counts()[0] == 1 and len(h.points("live")) == 6  # one run, every variant


def test_history_is_off_in_the_test_suite_and_on_demand():
    from optbench.history.store import history_url

    assert history_url() is None  # conftest: the suite never writes to the user's database
    assert history_url("off") is None and history_url("/tmp/x.sqlite").startswith("sqlite:////tmp/x.sqlite")


def test_the_history_page_is_drawn_by_the_report_and_escapes_its_text(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    h = _fresh(url)
    _fill(h, [2.0] * 6 + [3.0] * 6, spec="<b>m</b>")
    out = tmp_path / "page.html"
    assert main(["history", "--db", url, "--spec", "<b>m</b>", "--format", "html", "-o", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<!doctype html>") and "&lt;b&gt;m&lt;/b&gt;" in text and "<b>m</b>" not in text
    assert text.count("data:image/svg+xml;base64,") >= 1 and "Content-Security-Policy" in text


def _open_at_once(url: str, barrier, results) -> None:
    """A process that opens the history the moment every other one is ready to."""
    try:
        barrier.wait(timeout=60)
        History(url)
        results.put("ok")
    except BaseException as e:  # noqa: BLE001  (the parent reports what each process met)
        results.put(f"{type(e).__name__}: {str(e)[:300]}")


def test_processes_opening_a_fresh_postgresql_database_at_once_all_succeed(postgres):
    """A CI fan-out: four processes make the schema of one empty database at the same moment (its creation was a
    race: three of four failed with UniqueViolation on pg_type_typname_nsp_index)."""
    import multiprocessing as mp
    import uuid

    import sqlalchemy as sa

    name = f"race_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    url = postgres.replace("/postgres?", f"/{name}?")
    ctx = mp.get_context("fork")  # sqlalchemy and psycopg imported once; every child starts at the barrier
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_open_at_once, args=(url, barrier, results)) for _ in range(4)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join()
    assert outcomes == ["ok"] * 4
    h = History(url)
    with h.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(h.meta)).scalar() == 1
    h.engine.dispose()
    admin.dispose()


def test_long_names_are_stored_or_refused_in_one_line(db):
    """PostgreSQL's length limits (spec name 200, machine 400, variant id 400): names are cut to fit, and a
    variant id past its limit is one line, not a StringDataRightTruncation traceback."""
    from optbench.errors import OptbenchError

    h = _fresh(db)
    run = h.record_run("long", {"name": "n" * 300}, {**ENV, "cpu": "c" * 500, "commit": "f" * 100}, None, "run")
    h.record_row(run, _row("v" * 400, 2.0, np.random.default_rng(0)))
    assert h.spec_names() == ["n" * 200]
    if db.startswith("postgresql"):
        with pytest.raises(OptbenchError, match="history database .*: value too long"):
            h.record_row(run, _row("v" * 401, 2.0, np.random.default_rng(0)))
