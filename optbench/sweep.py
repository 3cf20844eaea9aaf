"""Run a plan: one isolated worker process per variant, a time limit each, rows written as they finish.

The executor is local processes; a failed, crashed or hung worker becomes a row with its
status, exit code or signal and the tail of its stderr, and the sweep goes on.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from optbench.cache import ArtifactCache, CacheIntegrityError
from optbench.env import collect_env, host_summary
from optbench.errors import Interrupted, OptbenchError, RunDirError, SpecError
from optbench.plan import Variant, plan
from optbench.spec.models import Spec
from optbench.store import SCHEMA_VERSION, append_row, final_rows, repair_tail, write_csv

MAX_VARIANTS = 500  # a sweep larger than this is asked for explicitly (--max-variants): hours of machine time


@dataclass
class RunOptions:
    run_dir: Path
    spec_path: Path
    force: bool = False
    resume: bool = False
    cache_dir: Path | None = None
    no_cache: bool = False
    quiet: bool = False
    mode: str = "run"  # run: build, judge, time; build: build the artifacts only (rows with status "built")
    jobs: int = 1  # variants in flight at once (builds overlap; timing windows stay exclusive)
    executor: str = "local"  # local | ray
    address: str | None = None  # a Ray cluster's address; None: a local Ray instance started and stopped here
    lock: Any = None  # the run directory's lock, held while the run lasts
    max_variants: int = MAX_VARIANTS  # more planned variants than this: refused before anything runs
    history: str | None = None  # the history database (a path or SQLAlchemy URL); None: $OPTBENCH_HISTORY or the default
    no_history: bool = False  # keep this run out of the history


# what optbench writes in a run directory; --force removes these and nothing else
RUN_FILES = ("results.jsonl", "results.csv", "report.html", "report.md", "report.csv", "spec.yaml", "plan.json",
             "env.json", "reference.json", "interpretation.json", "history.json")
RUN_DIRS = ("logs", "work")
MARKER = ".optbench-run.json"
LOCK = ".optbench-run.lock"


def _flat(d: Any, at: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{at}.{k}" if at else str(k)))
        return out
    return {at: d}


def _spec_changes(old: dict, new: dict) -> str:
    a, b = _flat(old), _flat(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return ", ".join(f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in keys[:3]) or "unknown fields"


def lock_run_dir(d: Path):
    """An exclusive lock on the run directory for the whole run (released when the process ends)."""
    import fcntl
    import os

    f = open(d / LOCK, "a+")  # noqa: SIM115 (held open for the run's lifetime)
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or "another process"
        f.close()
        raise RunDirError(f"{d} is in use by another optbench run ({holder}); wait for it or choose another "
                          "--run-dir") from None
    f.seek(0)
    f.truncate()
    f.write(f"pid {os.getpid()}")
    f.flush()
    return f


def _check_run_dir(d: Path, opts: RunOptions) -> None:
    """A run directory is absent, empty, or a run of optbench's; anything else is refused."""
    if d.exists() and not d.is_dir():
        raise RunDirError(f"--run-dir {d} is a file, not a directory")
    entries = sorted(p.name for p in d.iterdir()) if d.exists() else []
    entries = [e for e in entries if e != LOCK]
    # a run carries the marker; runs made before the marker carry their results, plan and spec
    is_run = MARKER in entries or {"results.jsonl", "plan.json", "spec.yaml"} <= set(entries)
    if not is_run and entries:
        ours = [e for e in entries if e in RUN_FILES or e in RUN_DIRS]
        if not opts.force or ours:
            raise RunDirError(f"{d} is not empty and is not an optbench run ({', '.join(entries[:4])}"
                              f"{', ...' if len(entries) > 4 else ''}); choose a new or empty --run-dir"
                              + ("" if opts.force else " (or --force to write beside these files)"))


def open_run_dir(spec: Spec, variants: list[Variant], opts: RunOptions) -> dict[str, dict]:
    """Validate, lock and (re)open the run directory; returns the rows already final (resume)."""
    d = opts.run_dir
    _check_run_dir(d, opts)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"cannot create the run directory {d}: {e.strerror}") from None
    try:
        opts.lock = lock_run_dir(d)
    except OSError as e:
        raise RunDirError(f"cannot write in the run directory {d}: {e.strerror}") from None
    has_results = (d / "results.jsonl").exists()
    if opts.resume:
        if not has_results:
            raise RunDirError(f"--resume: {d} holds no results.jsonl to resume")
        marker = json.loads((d / MARKER).read_text()) if (d / MARKER).exists() else {}
        if marker.get("mode", "run") != opts.mode:
            raise RunDirError(f"--resume: {d} was made by `optbench {marker.get('mode', 'run')}`, not "
                              f"`optbench {opts.mode}`; give the other command its own run directory")
        old = yaml.safe_load((d / "spec.yaml").read_text()) if (d / "spec.yaml").exists() else {}
        if old != spec.model_dump(mode="json"):
            raise RunDirError(f"--resume: the spec differs from the one {d} was run with "
                              f"({_spec_changes(old or {}, spec.model_dump(mode='json'))}); rows measured under "
                              "both would be mixed. Start a new run directory, or --force")
        planned = json.loads((d / "plan.json").read_text()) if (d / "plan.json").exists() else []
        new_ids = [v.id for v in variants]
        if sorted(planned) != sorted(new_ids):
            gone = sorted(set(planned) - set(new_ids))[:3]
            raise RunDirError(f"--resume: the spec changed the variant ids of {d} (e.g. {gone or sorted(set(new_ids) - set(planned))[:3]}); "
                              "start a new run directory or use --force")
        repair_tail(d)
        return final_rows(d)
    if has_results and not opts.force:
        raise RunDirError(f"{d} already holds results; pass --force to overwrite or --resume to finish it")
    import shutil

    for name in RUN_FILES:
        (d / name).unlink(missing_ok=True)
    for name in RUN_DIRS:
        shutil.rmtree(d / name, ignore_errors=True)
    (d / MARKER).write_text(json.dumps({"files": list(RUN_FILES), "mode": opts.mode}))
    (d / "spec.yaml").write_text(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False))
    (d / "plan.json").write_text(json.dumps([v.id for v in variants], indent=1))
    return {}


def _history_of(spec: Spec, opts: RunOptions, env: dict):
    """The history database and this run's id in it, or (None, None) when history is off for this run."""
    if opts.no_history:
        return None, None
    from optbench.history.store import open_history, run_uid

    history = open_history(opts.history)  # a bad URL or path is one clear line before anything runs
    if history is None:
        return None, None
    return history, history.record_run(run_uid(opts.run_dir), spec.model_dump(mode="json"), env,
                                       opts.run_dir.resolve(), opts.mode)


def run_sweep(spec: Spec, opts: RunOptions) -> Path:
    from optbench.interpret import model_fixed_batch

    variants = plan(spec, opts.mode, fixed_batch=model_fixed_batch(spec, opts.spec_path))
    if (n := sum(v.status == "planned" for v in variants)) > opts.max_variants:
        raise OptbenchError(f"the spec plans {n:,} variants to {opts.mode}, more than --max-variants "
                            f"{opts.max_variants} (at tens of seconds each, hours of machine time); narrow the spec "
                            f"(variants:, only:) or pass --max-variants {n}")
    done = open_run_dir(spec, variants, opts)
    try:
        return _sweep(spec, opts, variants, done)
    finally:
        if opts.lock is not None:
            opts.lock.close()  # releases the run directory
            opts.lock = None


def _sweep(spec: Spec, opts: RunOptions, variants: list[Variant], done: dict[str, dict]) -> Path:
    from optbench.measure import contention

    env = collect_env()
    (opts.run_dir / "env.json").write_text(json.dumps(env, indent=2))
    start = contention.snapshot()
    cache = ArtifactCache(opts.cache_dir, enabled=not opts.no_cache)
    try:
        cache.check_private()  # before anything runs: a cache others can write is refused, not used
    except CacheIntegrityError as e:
        raise OptbenchError(str(e)) from None
    history, run_id = _history_of(spec, opts, env)
    base = _row_base(spec, env)
    todo = [v for v in variants if v.id not in done]
    to_run = [v for v in todo if v.status != "skipped"]
    progress = Progress(len(variants), quiet=opts.quiet, pending=len(to_run))
    prepared: dict | None = None
    interrupted = False
    mode = "build" if opts.mode == "build" else "variant"

    def job_of(v: Variant) -> dict:
        return _job(spec, opts, cache, mode, variant=v.to_dict())

    def log_of(v: Variant) -> Path:
        return opts.run_dir / "logs" / f"{v.id}.log"

    def record(v: Variant, row: dict) -> None:
        read = (prepared or {}).get("interpretation")
        if read and read.get("warnings") and row.get("status") not in ("skipped", None):
            row = {**row, "warnings": list(row.get("warnings") or []) + list(read["warnings"])}
        full = {**base, **_variant_cols(v, spec), **row, "interpretation": read,
                "reference": (prepared or {}).get("reference")}
        append_row(opts.run_dir, full)
        nonlocal history
        if history is not None:
            try:
                history.record_row(run_id, full)  # one transaction per row
            except Exception as e:  # the database went away: the rows stay in results.jsonl
                sys.stderr.write(f"optbench: history: {e.__class__.__name__}: {str(e).splitlines()[0][:200]}; "
                                 f"this run's rows are in results.jsonl (`optbench history import {opts.run_dir}` "
                                 f"adds them later)\n")
                history = None
        progress.step(v.id, row["status"], ran=v.status != "skipped")

    try:
        for v in variants:  # resumed and skipped rows first: they cost nothing
            if v.id in done:
                progress.step(v.id, done[v.id]["status"])
            elif v.status == "skipped":
                progress.show(v.id)
                record(v, {"status": "skipped", "error": v.reason})
        if to_run:
            if any(str(v.device).startswith("cuda") for v in to_run) and (opts.jobs > 1 or opts.executor == "ray"):
                import os

                visible = os.environ.get("CUDA_VISIBLE_DEVICES")
                os.environ.setdefault("OPTBENCH_GPUS", visible if visible else
                                      ",".join(str(i) for i in range(len(env.get("gpus") or []))))
            prepared = _prepare(spec, opts, cache)
            if opts.executor == "ray":
                from optbench.executors import run_ray

                env["cluster"] = run_ray(to_run, job_of, record, lambda v: progress.show(v.id), opts.address, log_of)
            else:
                from optbench.executors import run_local

                env["cluster"] = {"executor": "local", "jobs": opts.jobs}
                run_local(to_run, lambda v: run_job(job_of(v), spec.measure, log_of(v),
                                                    lambda text, vid=v.id: progress.note(vid, text)), record, opts.jobs,
                          lambda v: progress.show(v.id))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        progress.finish()
    _record_contention(opts.run_dir, env, contention.between(start, contention.snapshot()))
    if interrupted:
        cmd = f"optbench run {opts.spec_path} --run-dir {opts.run_dir} --resume"
        raise Interrupted(f"interrupted; rows written so far are kept. Resume with: {cmd}")
    if todo or not (opts.run_dir / "results.csv").exists():
        write_csv(opts.run_dir)
    return opts.run_dir


def _record_contention(run_dir: Path, env: dict, seen: dict) -> None:
    """The run's contention into env.json: steal, iowait, throttling and load over the whole run (the workers
    are forkserver children, so other processes' CPU time is only attributable per timing window: the rows
    carry it, and the run keeps the worst of them and how many rows were busy)."""
    rows = [r for r in final_rows(run_dir).values() if r.get("status") == "ok"]
    others = [r["contention"]["other_cpus"] for r in rows
              if isinstance(r.get("contention"), dict) and r["contention"].get("other_cpus") is not None]
    seen = {k: v for k, v in seen.items() if k != "other_cpus"}
    env["contention"] = {**seen, "rows_busy": sum(bool(r.get("busy")) for r in rows), "rows": len(rows),
                         "worst_other_cpus_while_timing": max(others) if others else None}
    (run_dir / "env.json").write_text(json.dumps(env, indent=2))


def _row_base(spec: Spec, env: dict) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "commit": env.get("commit"), "host": host_summary(env),
            "model": _model_name(spec)}


def _model_name(spec: Spec) -> str:
    m = spec.model
    return {"torchvision": getattr(m, "name", ""), "python": getattr(m, "entrypoint", ""),
            "onnx": Path(getattr(m, "path", "")).name, "transformers": getattr(m, "path", "")}[m.source]


def _variant_cols(v: Variant, spec: Spec) -> dict[str, Any]:
    return {"variant_id": v.id, "backend": v.backend, "device": v.device, "precision": v.precision, "int8": v.int8,
            "transform": v.transform, "batch_size": v.batch_size, "shape": dict(v.dims), "settings": v.settings,
            "error": None}


# ---------------------------------------------------------------- worker processes
def _job(spec: Spec, opts: RunOptions, cache: ArtifactCache, mode: str, **extra) -> dict:
    return {"mode": mode, "spec": spec.model_dump(mode="json"), "spec_dir": str(opts.spec_path.parent.resolve()),
            "run_dir": str(opts.run_dir.resolve()), "cache_dir": str(cache.root.resolve()),
            "no_cache": opts.no_cache, **extra}


# Imported once by the forkserver, so a variant's process starts with them loaded (sympy alone takes
# seconds to import, and both the ONNX exporter and ORT's quantizer pull it in).
_PRELOAD = ["optbench.worker", "optbench.pipeline", "numpy", "onnx", "onnxruntime", "torch", "sympy", "torch.onnx",
            "onnxruntime.quantization", "onnxsim", "torch_pruning", "optbench.backends.torch_eager",
            "optbench.backends.onnxruntime", "optbench.transforms.quantize"]


def _context():
    """A forkserver that imported the heavy libraries once (never touching a GPU); each job is a fresh fork of it."""
    import multiprocessing as mp

    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


def rss_cap_bytes(rss_limit_mb: int | None) -> tuple[int, str]:
    """The resident-memory cap of a worker, and how it was chosen (for the row)."""
    if rss_limit_mb:
        return rss_limit_mb * 2**20, f"{rss_limit_mb} MiB resident (measure.rss_limit_mb)"
    total = _mem_total_bytes()
    return int(total * RSS_SHARE), f"{total * RSS_SHARE / 2**30:.1f} GiB resident ({RSS_SHARE:.0%} of the machine's memory)"


RSS_SHARE = 0.8     # default cap: this share of MemTotal (re-read each poll: on some GPU hosts it grows)
RSS_POLL_S = 0.2    # how often the sweep reads its worker's resident memory


def _mem_total_bytes() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 62


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
    deadline = time.monotonic() + timeout_s
    said, last, waited = "", time.monotonic(), 0.0
    while True:
        proc.join(min(RSS_POLL_S, max(0.0, deadline - time.monotonic())))
        now_t = time.monotonic()
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
        if time.monotonic() >= deadline:
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
    from optbench.worker import child_main, wait_file

    killed_for = None
    with tempfile.TemporaryDirectory(prefix="optbench-job-") as tmp:
        job_path, out = Path(tmp) / "job.json", Path(tmp) / "out.json"
        job_path.write_text(json.dumps({**job, "out": str(out), "driver_pid": os.getpid()}))
        proc = _context().Process(target=child_main, args=(str(job_path), str(log), memory_limit_mb), daemon=True)
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
    return result, {"exit_code": proc.exitcode, "timed_out": timed_out, "killed_for": killed_for,
                    "lock_wait_s": round(waited, 1)}


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


def _tail(log: Path, n: int = 1500) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return text[-n:].strip()


def _prepare(spec: Spec, opts: RunOptions, cache: ArtifactCache) -> dict:
    log = opts.run_dir / "logs" / "prepare.log"
    log.parent.mkdir(exist_ok=True)
    result, proc = spawn(_job(spec, opts, cache, "prepare"), spec.measure.timeout_s, None, log,
                         spec.measure.rss_limit_mb)
    if result is not None and result.get("status") == "failed" and result.get("user_error"):
        raise SpecError(result["error"])  # the spec must say what the model cannot show (one line, exit 2)
    if result is None or result.get("status") == "failed":
        why = (result or {}).get("error") or proc.get("killed_for") or _crash_reason(proc, spec.measure.timeout_s)
        tail = "" if result else f"; log tail: {_tail(log, 300)!r}"
        raise OptbenchError(f"preparing the model and reference failed: {why}{tail} (see {log})")
    (opts.run_dir / "work" / "prepare.json").write_text(json.dumps(result))
    public = {k: v for k, v in result.items() if k != "model_path"}
    (opts.run_dir / "reference.json").write_text(json.dumps(public, indent=2))
    if not opts.quiet:
        from optbench.interpret import load as load_interpretation

        interp = load_interpretation(opts.run_dir)
        if interp is not None:
            print("how optbench reads the model:\n" + interp.table(), flush=True)
    return result


def _crash_reason(proc: dict, timeout_s: float) -> str:
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

    t0 = time.monotonic()
    shares = round_shares(measure.rounds, measure.processes) if job["mode"] == "variant" else [None]
    first = {**job, "rounds": shares[0]} if len(shares) > 1 else job
    result, proc = spawn(first, measure.timeout_s, measure.memory_limit_mb, log, measure.rss_limit_mb, notify)
    row = row_from_worker(result, proc, measure.timeout_s, log)
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
            lost.append(f"timing process {i} {more.get('status')}: {str(more.get('error') or '')[:200]}")
    if others:
        row = merge_processes(row, others, job["variant"]["batch_size"], measure)
    if lost:
        row["warnings"] = list(row.get("warnings") or []) + lost
    row["wall_s"] = round(time.monotonic() - t0, 3)  # the variant's processes: build, judge, time
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
        row.update(status="timeout", error=f"timed out after {timeout_s:g} s{also}; {_tail(log, 500)}".strip())
    elif result is None:
        row.update(status="failed", error=f"worker {_crash_reason(proc, timeout_s)}; stderr tail: {_crash_tail(log)}")
    else:
        result.pop("traceback", None)
        result.pop("user_error", None)
        row.update(result)
    return row


# ---------------------------------------------------------------- progress
class Progress:
    """Progress on stderr: a rich bar with the running variant's elapsed time and the sweep's ETA on a terminal,
    one plain line per variant (status, seconds, ETA) elsewhere (CI logs)."""

    def __init__(self, total: int, quiet: bool = False, pending: int | None = None) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.pending = total if pending is None else pending  # variants that will run (not skipped, not resumed)
        self.ran: list[float] = []
        self.starts: dict[str, float] = {}
        self.live = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self.live = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("sweep"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                                     console=Console(stderr=True), transient=True)
            self.task = self.live.add_task("", total=total, eta="")
            self.live.start()

    def eta(self) -> str:
        if not self.ran or self.pending <= 0:
            return ""
        left = sorted(self.ran)[len(self.ran) // 2] * self.pending  # median seconds per variant that ran
        return "ETA " + (f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s")

    def show(self, vid: str) -> None:
        self.starts[vid] = time.monotonic()
        if self.live is not None:
            self.live.update(self.task, description=vid, eta=self.eta())
        elif not self.quiet:
            sys.stderr.write(f"[{self.done + 1}/{self.total}] running {vid}\n")
            sys.stderr.flush()

    def note(self, vid: str, text: str) -> None:
        """What a running variant waits for (a node lock another run holds), or "" when the wait ends."""
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(self.task, description=f"{vid}: {text}" if text else vid)
        elif text:
            sys.stderr.write(f"[{self.done + 1}/{self.total}] {vid}: {text}\n")
            sys.stderr.flush()

    def step(self, vid: str, status: str, ran: bool = False) -> None:
        self.done += 1
        took = time.monotonic() - self.starts.pop(vid, time.monotonic())
        if ran:
            self.ran.append(took)
            self.pending -= 1
        line = f"[{self.done}/{self.total}] {vid}: {status}" + (f" ({took:.1f} s" + (f"; {self.eta()}" if self.eta() else "")
                                                              + ")" if ran else "")
        if self.live is not None:
            self.live.console.print(line, highlight=False, markup=False)
            self.live.update(self.task, completed=self.done, eta=self.eta())
        elif not self.quiet:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
