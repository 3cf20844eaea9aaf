"""One isolated process per job (:func:`child_main`, forked by :mod:`optbench.run.supervise`).

``prepare`` loads data and the model once, saves the model, the splits and the reference
outputs to files; ``variant`` builds and measures one variant from those files and writes
its result row. A crash, a hang or an OOM here costs this variant only: the sweep turns the
missing output into a failed row.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from optbench.errors import OptbenchError
from optbench.run.context import Context, Stage
from optbench.run.node_locks import Exclusive
from optbench.run.prepare import prepare
from optbench.run.variant import measure_variant


def run_variant(job: dict, stage: Stage, excl: Exclusive | None = None) -> dict:
    ctx = Context.of_job(job, stage, excl)  # the spec is checked first: a user's mistake is said before anything else
    if ctx.excl is None:
        ctx.excl = Exclusive(label=f"optbench run {Path(job['run_dir']).name}, {job['variant'].get('id')}")
    turns = None
    if job.get("turns"):  # a paired re-timing's process: its rounds alternate with the other side's
        from optbench.measure.turns import Turns

        turns = Turns(**job["turns"])
    try:
        return measure_variant(ctx, job["variant"], build_only=job["mode"] == "build", rounds=job.get("rounds"),
                               timing_only=bool(job.get("timing_only")), recorded=job.get("recorded"),
                               rebuilt=bool(job.get("rebuilt")), turns=turns)
    finally:
        if turns is not None:
            turns.close()


def main(argv: list[str], excl: Exclusive | None = None) -> int:
    """Run the job file ``argv[0]`` (prepare or variant) and write its result beside; ``excl``: this process's node
    locks (a variant's process takes them at its start; without, the variant takes them itself)."""
    job = json.loads(Path(argv[0]).read_text())
    out = Path(job["out"])
    result, status = run(job, excl)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(out)
    return status


def _entry(name: str):
    """``package.module:function`` named by the job: the worker runs jobs of packages that build on ``run``
    (``run`` imports none of them)."""
    import importlib

    module, _, function = name.partition(":")
    if not module.startswith("optbench."):
        raise ValueError(f"a worker job's entry must be an optbench function, not {name!r}")
    return getattr(importlib.import_module(module), function)


def run(job: dict, excl: Exclusive | None = None) -> tuple[dict, int]:
    """A job's result and the exit status its process ends with: any failure becomes a reported one."""
    stage = Stage("prepare" if job["mode"] == "prepare" else "start")
    try:
        if job["mode"] == "call":  # a job of a package built on this one (``optbench deploy``'s serving candidates)
            return _entry(job["entry"])(job, stage, excl), 0
        return (prepare(job) if job["mode"] == "prepare" else run_variant(job, stage, excl)), 0
    except Exception as e:  # the worker's whole job is to turn any failure into a reported one
        message = e.format() if isinstance(e, OptbenchError) else f"{e.__class__.__name__}: {e}"
        return {"status": "failed", "error": message.strip()[:2000], "failed_stage": stage.now,
                "user_error": isinstance(e, OptbenchError), "traceback": traceback.format_exc()[-4000:]}, 3


def run_inline(job: dict) -> dict:
    """A variant's job in this process (the inline launcher): its row as the worker process would return it, read
    as the supervisor reads it (no time limit, no memory cap; the traceback goes to the job's log)."""
    import optbench.clock as clock

    t0 = clock.monotonic()
    excl = Exclusive(label=f"optbench run {Path(job['run_dir']).name}, {job['variant'].get('id')} (inline)")
    try:
        result, _ = run(job, excl)
    finally:
        excl.close()
    if tb := result.pop("traceback", None):
        log = Path(job["run_dir"]) / "logs" / f"{job['variant']['id']}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(tb)
    result.pop("user_error", None)
    return {**result, "wall_s": round(clock.monotonic() - t0, 3)}


def _vm_size_bytes() -> int:
    """Address space already mapped (the preloaded libraries); the memory cap is counted on top of it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def wait_file(log: Path) -> Path:
    """Where a job's process announces a wait on a node lock while it lasts (beside its log)."""
    return log.with_name(log.name + ".waiting")


def started_file(job_path: Path) -> Path:
    """Where a job's process writes when it started (wall clock), beside its job file."""
    return job_path.with_name("started")


def _die_with_driver(driver: int, job_dir: Path) -> None:
    """Fork a watcher that ends this job's whole process group (and removes its temp folder) once the process
    that spawned it is gone, killed with -9 included: a hung worker must not outlive its driver and hold the
    node's timing lock. A process, not a thread, so a worker hung in native code holding the GIL still dies.
    It leaves quietly when the worker ends."""
    import shutil
    import signal
    import time

    worker = os.getpid()
    if os.fork() != 0:
        return
    try:
        while os.getppid() == worker:
            try:
                os.kill(driver, 0)
            except ProcessLookupError:
                shutil.rmtree(job_dir, ignore_errors=True)
                os.killpg(worker, signal.SIGKILL)
            except PermissionError:
                pass
            time.sleep(0.5)
    finally:
        os._exit(0)


def child_main(job_path: str, log_path: str, memory_limit_mb: int | None) -> None:
    """Entry of a job's process: stdout/stderr to the job's log, an address-space cap, then the job."""
    import optbench.clock as clock

    started_file(Path(job_path)).write_text(repr(clock.wall()))  # the executor's fixed cost ends here
    os.setpgid(0, 0)  # its own process group: a timeout ends whatever the job started, too
    job = json.loads(Path(job_path).read_text())
    if job.get("gpu") is not None:  # the GPU the executor gave this variant; before anything initialises CUDA
        os.environ["CUDA_VISIBLE_DEVICES"] = str(job["gpu"])
    if job.get("driver_pid"):
        _die_with_driver(int(job["driver_pid"]), Path(job_path).parent)
    import faulthandler

    # appending: the sweep may cut a runaway log short, and writes then go on at the new end
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    faulthandler.enable()  # a segfault leaves the Python stack in the log (the row's stderr tail)
    excl = None
    if job.get("mode") != "prepare":
        command = "build" if job["mode"] == "build" else "run"
        label = f"optbench {command} {Path(job['run_dir']).name}, " \
                f"{(job.get('variant') or {}).get('id', job.get('mode'))}"
        # this process's node locks; taken before it does any work: a timing window elsewhere waits for none. A
        # build times nothing: it takes no lock and waits for no timing window
        if job.get("locks") == "held by the parent":  # a paired re-timing's process: the window is its parent's
            from optbench.run.node_locks import HeldByParent

            excl = HeldByParent(label)
        else:
            excl = Exclusive(label=label, wait_file=wait_file(Path(log_path)))
        if command == "run":
            excl.build()
    if memory_limit_mb:
        import importlib
        import resource

        # the forkserver of this process preloaded the first sweep's list, which may lack this job's libraries
        # (an ONNX-only sweep ran first): they load before the cap, so the cap counts what the job allocates
        for name in job.get("preload") or ():
            try:
                importlib.import_module(name)
            except ImportError:
                pass  # the job imports it again and its row says why it cannot
        cap = _vm_size_bytes() + memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    code = main([job_path], excl)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)

