"""Worker processes and their supervision: a forkserver that imported the heavy libraries once, one process
per job with a time limit and a resident-memory watchdog, its waits on node locks heard and not counted, its log
kept bounded, and the row made from how it ended (ok, failed, crashed, timed out). Used by every executor."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optbench.clock as clock
from optbench.row import warning


def worker_preload(spec: Any) -> list[str]:
    """What the forkserver of a sweep of ``spec`` imports once: the libraries of the backends it runs and of the
    one that computes its model's reference (an ONNX model on ONNX Runtime imports no torch; a torch model does)."""
    from optbench.backends import reference_backend

    names = {b.name for b in spec.backends} | {reference_backend(spec.model.kind.framework).name}
    return backend_preload(names)


def backend_preload(names: set[str]) -> list[str]:
    """What a forkserver imports once for jobs of the backends ``names`` (registered names); a backend that takes
    torch modules (torch-compile, ExecuTorch) brings torch's list."""
    from optbench.backends import get_backend, preload_modules

    names = set(names) | {"torch" for n in names if get_backend(n).consumes == "torch"}
    return ["optbench.run.worker", *preload_modules(names), "optbench.transforms.quantize"]


def _context(preload: list[str] | None = None):
    """A forkserver that imported the heavy libraries once (never touching a GPU); each job is a fresh fork of it.
    ``preload``: what it imports (:func:`worker_preload`), every backend's libraries where not given; the first
    job of a process starts the forkserver, and its list holds for the process's life."""
    import multiprocessing as mp

    from optbench.backends import preload_modules

    ctx = mp.get_context("forkserver")
    # imported once, so a variant's process starts with them loaded (sympy alone takes seconds to import, and both
    # the ONNX exporter and ORT's quantizer pull it in); the backends say what they need
    ctx.set_forkserver_preload(preload if preload is not None else
                               ["optbench.run.worker", *preload_modules(), "optbench.transforms.quantize"])
    return ctx


def warm_forkserver(preload: list[str] | None = None, wait: bool = True) -> None:
    """Start the forkserver now, so the first job does not pay for its imports; ``wait``: until they are done
    (seconds), else it imports them beside whatever this process does next (the first job waits for them)."""
    if not wait:
        import multiprocessing.forkserver as forkserver

        _context(preload)
        forkserver.ensure_running()
        return
    p = _context(preload).Process(target=os.getpid, daemon=True)
    p.start()
    p.join()


def rss_cap_bytes(rss_limit_mb: int | None) -> tuple[int, str]:
    """The resident-memory cap of a worker, and how it was chosen (for the row)."""
    if rss_limit_mb:
        return rss_limit_mb * 2**20, f"{rss_limit_mb} MiB resident (measure.rss_limit_mb)"
    total = _mem_total_bytes()
    return int(total * RSS_SHARE), f"{total * RSS_SHARE / 2**30:.1f} GiB resident ({RSS_SHARE:.0%} of the machine's memory)"


RSS_SHARE = 0.8     # default cap: this share of MemTotal (re-read each poll: on some GPU hosts it grows)
RSS_POLL_S = 0.2    # how often the sweep reads its worker's resident memory


def _mem_total_bytes() -> int:
    from optbench.measure.memory import proc_kib_field

    return proc_kib_field("/proc/meminfo", "MemTotal") or 1 << 62


def _rss_bytes(pid: int) -> int:
    try:
        import os

        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _join_watching(proc, timeout_s: float, rss_limit_mb: int | None, waiting: Path | None = None,
                   notify: Callable[[str], None] | None = None, log: Path | None = None) -> tuple[bool, str | None, float]:
    """Wait for the worker, killing it past the time limit or past the resident-memory cap (a watchdog works
    for CPU and CUDA workers alike, where an address-space limit breaks CUDA's large virtual reservations);
    what the worker says it waits for (``waiting``, a node lock held by another run) goes to ``notify``, and that
    wait does not count against ``timeout_s``; a log past LOG_CAP_BYTES is cut back to its head."""
    deadline = clock.monotonic() + timeout_s
    said, last, waited = "", clock.monotonic(), 0.0
    while True:
        proc.join(min(RSS_POLL_S, max(0.0, deadline - clock.monotonic())))
        now_t = clock.monotonic()
        if said:  # waiting on a lock another run holds is not the variant's time
            deadline += now_t - last
            waited += now_t - last
        last = now_t
        if waiting is not None:
            try:
                now = waiting.read_text().strip()
            except OSError:
                now = ""
            if now != said:
                said = now
                if notify is not None:
                    notify(now)
        if log is not None:
            _cap_log(log)
        if proc.exitcode is not None:
            return False, None, waited
        if clock.monotonic() >= deadline:
            return True, None, waited
        cap, how = rss_cap_bytes(rss_limit_mb)
        rss = _rss_bytes(proc.pid)
        if rss > cap:
            proc.kill()
            proc.join()
            return False, f"out of memory: the worker's resident memory reached {rss / 2**20:,.0f} MiB, over its cap of {how}", waited


LOG_CAP_BYTES = 20 << 20  # a worker's log beyond this (a hook printing in a loop) is cut back to its first MiB
LOG_KEEP_BYTES = 1 << 20


def _cap_log(log: Path) -> None:
    try:
        if log.stat().st_size <= LOG_CAP_BYTES:
            return
        with open(log, "r+b") as f:  # the worker appends (O_APPEND): its next write lands at the new end
            f.seek(LOG_KEEP_BYTES)
            f.write(f"\n[optbench: the log passed {LOG_CAP_BYTES >> 20} MiB; the rest up to here was cut]\n".encode())
            f.truncate()
    except OSError:
        pass


def spawn(job: dict, timeout_s: float, memory_limit_mb: int | None, log: Path,
          rss_limit_mb: int | None = None, notify: Callable[[str], None] | None = None) -> tuple[dict | None, dict]:
    """Run one job in its own process; return (its output or None, what happened to the process). ``notify``
    hears what the process waits for while it waits (a timing lock another run holds), and "" when it stops."""
    from optbench.run.worker import child_main, started_file, wait_file

    killed_for = None
    with tempfile.TemporaryDirectory(prefix="optbench-job-") as tmp:
        job_path, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_path.write_text(json.dumps({**job, "out": str(out), "driver_pid": os.getpid()}))
        proc = _context(job.get("preload")).Process(target=child_main, args=(str(job_path), str(log), memory_limit_mb), daemon=True)
        proc.start()
        _LIVE.add(proc)
        try:
            timed_out, killed_for, waited = _join_watching(proc, timeout_s, rss_limit_mb, wait_file(log), notify, log)
            if timed_out:
                proc.kill()
                proc.join()
        except KeyboardInterrupt:
            proc.kill()
            proc.join()
            raise
        finally:
            _LIVE.discard(proc)
            _kill_group(proc.pid)
            wait_file(log).unlink(missing_ok=True)
        result = json.loads(out.read_text()) if out.exists() else None
        started = started_file(job_path)
        started_at = float(started.read_text()) if started.exists() else None
    return result, {"exit_code": proc.exitcode, "timed_out": timed_out, "killed_for": killed_for,
                    "lock_wait_s": round(waited, 1), "started_at": started_at}


_LIVE: set = set()  # worker processes running now (several with --jobs), killed on Ctrl-C


def kill_live_workers() -> None:
    for proc in list(_LIVE):
        try:
            proc.kill()
        except Exception:
            pass
        _kill_group(proc.pid)


def _kill_group(pgid: int | None) -> None:
    """End whatever the worker started (its process group), so no child outlives its variant."""
    import os

    if pgid:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _crash_tail(log: Path, n: int = 1500) -> str:
    """The crash's own report where faulthandler wrote one (its header and the Python stack, without the list of
    extension modules after it), else the log's tail."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    at = text.rfind("Fatal Python error")
    if at < 0:
        return text[-n:].strip()
    report = text[at:]
    cut = report.find("\nExtension modules:")
    return (report[:cut] if cut > 0 else report)[:n].strip()


def tail(log: Path, n: int = 1500) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return text[-n:].strip()


def crash_reason(proc: dict, timeout_s: float) -> str:
    if proc["timed_out"]:
        return f"timed out after {timeout_s:g} s"
    code = proc["exit_code"]
    if code < 0:
        return f"killed by signal {signal.Signals(-code).name}"
    return f"exited with code {code}"


def run_job(job: dict, measure: Any, log: Path, notify: Callable[[str], None] | None = None) -> dict:
    """A variant's worker process, and for ``measure.processes`` > 1 its further timing processes (rebuilt from
    the cache, timing only), their rounds pooled into one row. Used by every executor, on the node that runs the
    variant (so the memory cap the row records is the one enforced there)."""
    from optbench.measure.timing import merge_processes, round_shares

    t0, dispatched = clock.monotonic(), job.get("dispatched_at") or clock.wall()
    timed = job["mode"] == "variant" and measure.mode == "full"  # judge mode: one process, nothing timed
    shares = round_shares(measure.rounds, measure.processes) if timed else [None]
    first = {**job, "rounds": shares[0]} if len(shares) > 1 else job
    result, proc = spawn(first, measure.timeout_s, measure.memory_limit_mb, log, measure.rss_limit_mb, notify)
    row = row_from_worker(result, proc, measure.timeout_s, log)
    if proc.get("started_at") is not None:  # dispatch (the driver's clock) to the process's first line
        row["start_s"] = round(max(0.0, proc["started_at"] - dispatched), 3)
    others, lost = [], []
    for i, n in enumerate(shares[1:], start=1):
        if row.get("status") != "ok":
            break
        plog = log.with_name(log.name.replace(".log", f".p{i}.log"))
        res, pr = spawn({**job, "rounds": n, "timing_only": True}, measure.timeout_s, measure.memory_limit_mb, plog,
                        measure.rss_limit_mb, notify)
        more = row_from_worker(res, pr, measure.timeout_s, plog)
        if more.get("status") == "ok":
            others.append(more)
        else:
            lost.append(warning("timing_process", f"timing process {i} {more.get('status')}: "
                                                  f"{str(more.get('error') or '')[:200]}"))
    if others:
        row = merge_processes(row, others, job["variant"]["batch_size"], measure)
    if lost:
        row["warnings"] = list(row.get("warnings") or []) + lost
    row["wall_s"] = round(clock.monotonic() - t0, 3)  # the variant's processes: build, judge, time
    if isinstance(row.get("settings"), dict):
        row["settings"]["memory_cap"] = rss_cap_bytes(measure.rss_limit_mb)[1]
    return row


def row_from_worker(result: dict | None, proc: dict, timeout_s: float, log: Path) -> dict:
    """A variant's row from what its worker process returned and how it ended (killed, timed out, crashed)."""
    code = proc["exit_code"] if proc["exit_code"] is not None else -9
    row: dict[str, Any] = {"exit_code": code, "signal": signal.Signals(-code).name if code < 0 else None}
    if proc.get("killed_for"):
        row.update(status="failed", error=proc["killed_for"])
    elif proc["timed_out"]:
        waited = proc.get("lock_wait_s") or 0
        also = f" (not counting {waited:g} s waiting for another run's timing window)" if waited else ""
        row.update(status="timeout", error=f"timed out after {timeout_s:g} s{also}; {tail(log, 500)}".strip())
    elif result is None:
        row.update(status="failed", error=f"worker {crash_reason(proc, timeout_s)}; stderr tail: {_crash_tail(log)}")
    else:
        result.pop("traceback", None)
        result.pop("user_error", None)
        row.update(result)
    return row
