"""Executors: --jobs N locally (builds overlap, timing windows exclusive), Ray (a local instance, and a two-node
cluster from ray.cluster_utils with a node killed mid-sweep), and the file locks that keep timing exclusive."""

import json
import multiprocessing as mp
import threading
import time
from pathlib import Path

import pytest

from optbench.cli import main
from tests.conftest import write_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC = """\
name: exec
model: {source: python, entrypoint: "ROOT/experiments/models/digits.py:build", kwargs: {epochs: 2, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 64, eval: 128}
variants:
  precision: [fp32, int8]
  batch_size: [1, 8]
backends: [torch, onnxruntime]
measure: {warmup_s: 0.05, min_iters: 10, min_duration_s: 0.3, max_iters: 400, rounds: 2, round_pause_s: 0}
""".replace("ROOT", str(ROOT))


def _rows(run):
    from optbench.store import final_rows

    return final_rows(run)


def _until_waiting(note: Path, limit_s: float = 30.0) -> None:
    """Until the process that writes ``note`` says it waits for a lock (an event, not a fixed sleep)."""
    deadline = time.monotonic() + limit_s
    while not (note.exists() and note.read_text().startswith("waiting")):
        assert time.monotonic() < deadline, f"{note.name}: no wait announced in {limit_s} s"
        time.sleep(0.01)


def _hold(root, mode, started, release, out, who=""):
    from optbench.run.node_locks import Exclusive

    e = Exclusive(Path(root), wait_file=Path(root) / f"{who}waiting")  # says what it waits for while it waits
    e.build()
    if mode == "time":
        with e.timing("cpu"):
            out.put((f"{who}start", time.monotonic()))
            started.set()
            release.wait(10)
            out.put((f"{who}end", time.monotonic()))
    else:
        out.put((f"{who}start", time.monotonic()))
        started.set()
        release.wait(10)
        out.put((f"{who}end", time.monotonic()))


def test_a_cpu_timing_window_waits_for_builds_and_keeps_new_ones_out(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    b_started, b_release = ctx.Event(), ctx.Event()
    t_started, t_release = ctx.Event(), ctx.Event()
    builder = ctx.Process(target=_hold, args=(tmp_path, "build", b_started, b_release, q, "build1-"))
    builder.start()
    assert b_started.wait(30)
    timer = ctx.Process(target=_hold, args=(tmp_path, "time", t_started, t_release, q, "timing-"))
    timer.start()
    _until_waiting(tmp_path / "timing-waiting")  # a build is in progress: the timing window waits
    assert not t_started.is_set()
    late_started, late_release = ctx.Event(), ctx.Event()
    late = ctx.Process(target=_hold, args=(tmp_path, "build", late_started, late_release, q, "build2-"))
    late.start()
    _until_waiting(tmp_path / "build2-waiting")  # the later build queues behind the waiting window
    b_release.set()  # the build ends: the timing window goes before the build that came later
    assert t_started.wait(10)
    assert not late_started.wait(1.0)  # no build while the window times
    t_release.set()
    assert late_started.wait(10)
    late_release.set()
    for p in (builder, timer, late):
        p.join(10)
    events = []
    while not q.empty():
        events.append(q.get())
    order = [e for e, _ in sorted(events, key=lambda x: x[1])]
    assert order == ["build1-start", "build1-end", "timing-start", "timing-end", "build2-start", "build2-end"]


def test_a_dead_process_releases_its_locks(tmp_path):
    from optbench.run.node_locks import Exclusive

    ctx = mp.get_context("spawn")
    q, started, release = ctx.Queue(), ctx.Event(), ctx.Event()
    p = ctx.Process(target=_hold, args=(tmp_path, "time", started, release, q))
    p.start()
    assert started.wait(30)
    p.kill()
    p.join()
    e = Exclusive(tmp_path)
    e.build()
    done = threading.Event()

    def timed():
        with e.timing("cpu"):
            done.set()

    threading.Thread(target=timed, daemon=True).start()
    assert done.wait(5)


@pytest.mark.slow  # 20-70 s on two cores
def test_jobs_two_runs_every_variant_with_exclusive_timing(tmp_path, cache_dir):
    spec = write_spec(tmp_path, SPEC)
    run = tmp_path / "jobs2"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report", "--jobs", "2"]) == 0
    rows = _rows(run)
    statuses = {r["status"] for r in rows.values()}
    assert statuses <= {"ok", "skipped"} and "ok" in statuses
    ok = [r for r in rows.values() if r["status"] == "ok"]
    assert all("lock_wait_s" in r and r["node"] for r in ok)
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from executor_compare import overlaps

    assert len(ok) == 6 and all(r["timing_window"][0] < r["timing_window"][1] for r in ok)
    assert overlaps(ok) == []  # no two CPU timing windows shared the machine
    env = json.loads((run / "env.json").read_text())
    assert env["cluster"] == {"executor": "local", "jobs": 2, "gpus": []}
    assert main(["run", str(spec), "--run-dir", str(tmp_path / "bad"), "--jobs", "0"]) == 2
    assert main(["run", str(spec), "--run-dir", str(tmp_path / "bad"), "--address", "h:1"]) == 2


def test_ray_runner_pool_sizes_follow_the_cluster_not_a_fixed_count():
    from optbench.run.executors import SLOTS_PER_GPU, pool_sizes

    assert SLOTS_PER_GPU == 2
    assert pool_sizes(12, 0, 2, 0) == (2, 0)  # this machine: one runner per core
    assert pool_sizes(1, 0, 16, 0) == (1, 0)  # no more runners than variants
    assert pool_sizes(4, 16, 32, 2) == (4, 4)  # two per GPU of a 2-GPU host
    assert pool_sizes(4, 40, 128, 8) == (4, 16)  # eight GPUs over nodes: the same rule
    assert pool_sizes(0, 3, 32, 2) == (0, 3)
    assert pool_sizes(5, 5, 2, 4) == (1, 1)  # few CPUs: CPU variants keep one runner
    assert pool_sizes(0, 5, 8, 0.5) == (0, 0)  # no whole GPU: CUDA variants fail with the reason, not wait


def test_a_row_says_how_long_its_process_took_to_start_after_dispatch(tmp_path):
    from optbench.run.supervise import spawn

    out, proc = spawn({"mode": "prepare", "nothing": True}, 60, None, tmp_path / "x.log")
    assert isinstance(proc["started_at"], float) and abs(proc["started_at"] - time.time()) < 60


ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")


@pytest.mark.slow  # a local Ray instance
def test_ray_local_gives_the_variants_and_rows_of_the_local_executor(tmp_path, cache_dir):
    spec = write_spec(tmp_path, SPEC)
    local, remote = tmp_path / "local", tmp_path / "ray"
    assert main(["run", str(spec), "--run-dir", str(local), "--quiet", "--no-report"]) == 0
    assert main(["run", str(spec), "--run-dir", str(remote), "--quiet", "--no-report", "--executor", "ray"]) == 0
    a, b = _rows(local), _rows(remote)
    assert sorted(a) == sorted(b)
    assert {k: r["status"] for k, r in a.items()} == {k: r["status"] for k, r in b.items()}
    assert all(r.get("ray_node_id") for r in b.values() if r["status"] == "ok")
    cluster = json.loads((remote / "env.json").read_text())["cluster"]
    assert cluster["executor"] == "ray" and cluster["runners"] == {"cpu": 2, "cuda": 0}  # 2 cores, no GPU
    # the fixed cost: a fork locally; under Ray a call to a warm runner (its first variant also waits for its start)
    for rows in (a, b):
        assert all(isinstance(r["start_s"], float) and r["start_s"] >= 0 for r in rows.values() if r["status"] == "ok")
    assert sorted(r["start_s"] for r in b.values() if r["status"] == "ok")[2] < 5
    assert not ray.is_initialized()  # optbench shut down the instance it started


@pytest.mark.slow  # a local Ray instance
def test_a_node_killed_mid_sweep_costs_only_its_variant(tmp_path, cache_dir):
    """Two nodes of one CPU each; once the second node has taken a variant it is removed: that variant is
    retried once (marked) or failed with the reason, every other variant is measured, and the sweep ends."""
    from ray.cluster_utils import Cluster

    from optbench.run.sweep import RunOptions, run_sweep
    from optbench.specfile.load import load_spec

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    victim = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address)
    try:
        spec_path = write_spec(tmp_path, SPEC.replace("min_duration_s: 0.3", "min_duration_s: 2.0"))
        run = tmp_path / "cluster"
        opts = RunOptions(run_dir=run, spec_path=spec_path, quiet=True, executor="ray", address=cluster.address)
        done = {}
        t = threading.Thread(target=lambda: done.setdefault("dir", run_sweep(load_spec(spec_path), opts)), daemon=True)
        t.start()
        victim_id = victim.node_id
        deadline = time.monotonic() + 240
        killed = None
        while time.monotonic() < deadline and t.is_alive() and killed is None:
            for marker in (run / "work" / "running").glob("*.json") if (run / "work" / "running").exists() else []:
                try:
                    where = json.loads(marker.read_text())
                except (OSError, ValueError):
                    continue
                if where["ray_node_id"] == victim_id:
                    cluster.remove_node(victim)
                    killed = marker.stem
                    break
            time.sleep(0.1)
        t.join(600)
        assert not t.is_alive(), "the sweep hung after a node died"
        assert killed, "no variant ever ran on the second node"
        rows = _rows(run)
        measured = [r for r in rows.values() if r["status"] != "skipped"]
        assert len(measured) == sum(1 for r in json.loads((run / "plan.json").read_text())) - \
            sum(r["status"] == "skipped" for r in rows.values())
        lost = [r for r in measured if r.get("retried") or r["status"] == "failed"]
        assert [r["variant_id"] for r in lost] == [killed], [(r["variant_id"], r["status"], r.get("error")) for r in lost]
        r = lost[0]
        assert (r["retried"] and r["status"] == "ok") or "lost" in (r.get("failed_stage") or "")
        assert all(x["status"] == "ok" for x in measured if x["variant_id"] != killed)
    finally:
        ray.shutdown()
        cluster.shutdown()


def test_gpu_timing_windows_get_a_core_of_their_own_where_cpus_are_spare(monkeypatch):
    from optbench.run import node_locks

    monkeypatch.setattr(node_locks.os, "cpu_count", lambda: 16)
    monkeypatch.setenv("OPTBENCH_GPUS", "0,1")
    assert node_locks.reserved_cores() == {"0": 15, "1": 14}
    monkeypatch.setattr(node_locks.os, "cpu_count", lambda: 2)  # a 2-core VM sets nothing aside
    assert node_locks.reserved_cores() == {}
    monkeypatch.delenv("OPTBENCH_GPUS")
    monkeypatch.setattr(node_locks.os, "cpu_count", lambda: 16)
    assert node_locks.reserved_cores() == {}  # no GPU in use: no reserve


def test_cuda_variants_spread_over_the_gpus_two_in_flight_per_gpu():
    """The local executor's GPU slots: each CUDA variant gets one GPU, at most two run on a GPU at once, CPU
    variants take none; a real thread pool, the variants' work a short sleep."""
    import threading
    import time
    from types import SimpleNamespace

    from optbench.run.executors import run_local

    variants = [SimpleNamespace(id=f"v{i}", device="cuda") for i in range(8)] + [SimpleNamespace(id="c", device="cpu")]
    lock, live, most, given = threading.Lock(), {"0": 0, "1": 0}, {"0": 0, "1": 0}, {}

    def run_one(v, gpu=None):
        given[v.id] = gpu
        if gpu is not None:
            with lock:
                live[gpu] += 1
                most[gpu] = max(most[gpu], live[gpu])
            time.sleep(0.05)
            with lock:
                live[gpu] -= 1
        return {"status": "ok"}

    rows = {}
    run_local(variants, run_one, lambda v, row: rows.__setitem__(v.id, row), 1, lambda v: None, ["0", "1"])
    assert len(rows) == 9 and given["c"] is None
    assert sorted(g for k, g in given.items() if k != "c").count("0") == 4  # shared evenly
    assert most == {"0": 2, "1": 2}


@pytest.mark.slow  # a local Ray instance
def test_a_cuda_variant_on_a_ray_cluster_without_a_gpu_fails_with_the_reason(tmp_path):
    from types import SimpleNamespace

    from optbench.run.executors import run_ray

    rows = []
    cluster = run_ray([SimpleNamespace(id="torch.fp16.none.bs1-x", device="cuda")], lambda v: {},
                      lambda v, row: rows.append(row), lambda v: None, None, lambda v: tmp_path / f"{v.id}.log")
    row, = rows
    assert row["status"] == "failed" and "no GPU" in row["error"] and cluster["runners"] == {"cpu": 0, "cuda": 0}
    assert not ray.is_initialized()
