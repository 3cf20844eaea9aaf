"""Run a plan: the run directory's lifecycle (lock, resume, --force), the model's preparation, the variants
through an executor (local processes or Ray; each job's process is :mod:`optbench.run.supervise`'s), rows written to
results.jsonl and the history as they finish.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from optbench.backends import reference_backend
from optbench.cache import ArtifactCache, CacheIntegrityError
from optbench.env import collect_env, host_summary
from optbench.errors import Interrupted, OptbenchError, RunDirError, SpecError
from optbench.plan import Variant, plan
from optbench.row import SCHEMA_VERSION, normalize, warning
from optbench.run.progress import Progress
from optbench.run.supervise import crash_reason, spawn, tail, worker_preload
from optbench.spec.models import Spec
from optbench.store import append_row, final_rows, repair_tail, write_csv

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
    gpus: list[str] | None = None  # the GPUs CUDA variants spread over (local executor); None: every visible one
    executor: str = "local"  # local | ray | inline (see optbench.run.launchers)
    address: str | None = None  # a Ray cluster's address; None: a local Ray instance started and stopped here
    lock: Any = None  # the run directory's lock, held while the run lasts
    max_variants: int = MAX_VARIANTS  # more planned variants than this: refused before anything runs
    history: str | None = None  # the history database (a path or SQLAlchemy URL); None: $OPTBENCH_HISTORY or the default
    no_history: bool = False  # keep this run out of the history
    # optbench tune: each step adds variants to the run (the spec may change its variant lists only); rows already
    # final are kept, the preparation is reused, and ``annotate`` adds columns to a variant's row (its search step)
    extend: bool = False
    annotate: dict[str, dict] = field(default_factory=dict)
    retime: list[str] = field(default_factory=list)  # variants run again though final (their newer rows count)


# what optbench writes in a run directory; --force removes these and nothing else
RUN_FILES = ("results.jsonl", "results.csv", "report.html", "report.md", "report.csv", "spec.yaml", "plan.json",
             "env.json", "reference.json", "interpretation.json", "history.json", "search.json")
RUN_DIRS = ("logs", "work", "explain")
# the spec's variant lists: what a tune step may change in its run's spec (every other field must stay)
VARIANT_LISTS = ("precision", "int8", "fp16")
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
    if opts.extend and (d / MARKER).exists():
        return _extend(d, spec, variants, opts, has_results)
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


def _without_lists(spec: dict) -> dict:
    """What a grown run keeps: all but the variant lists (and how often tune times its answer again)."""
    search = {k: v for k, v in (spec.get("search") or {}).items() if k != "confirm"} if spec.get("search") else None
    return {**spec, "variants": {k: v for k, v in (spec.get("variants") or {}).items() if k not in VARIANT_LISTS},
            "search": search}


def _extend(d: Path, spec: Spec, variants: list[Variant], opts: RunOptions, has_results: bool) -> dict[str, dict]:
    """A run grown by a step of `optbench tune`: the same spec but for its variant lists, every variant planned
    before still planned; its spec and plan rewritten, the rows already final returned."""
    marker = json.loads((d / MARKER).read_text())
    if marker.get("mode", "run") != opts.mode:
        raise RunDirError(f"{d} was made by `optbench {marker.get('mode', 'run')}`, not `optbench {opts.mode}`; "
                          "give the other command its own run directory")
    old = yaml.safe_load((d / "spec.yaml").read_text()) if (d / "spec.yaml").exists() else {}
    new = spec.model_dump(mode="json")
    if old and _without_lists(old) != _without_lists(new):
        raise RunDirError(f"the spec differs from the one {d} was run with beyond its variant lists "
                          f"({_spec_changes(_without_lists(old), _without_lists(new))}); start a new run directory, "
                          "or --force")
    planned = json.loads((d / "plan.json").read_text()) if (d / "plan.json").exists() else []
    if gone := sorted(set(planned) - {v.id for v in variants}):
        raise RunDirError(f"{d}: variants planned before are gone from the plan (e.g. {gone[:3]})")
    (d / "spec.yaml").write_text(yaml.safe_dump(new, sort_keys=False))
    (d / "plan.json").write_text(json.dumps([v.id for v in variants], indent=1))
    if not has_results:
        return {}
    repair_tail(d)
    return final_rows(d)


def _reused_preparation(opts: RunOptions, needs_onnx: bool) -> dict | None:
    """A grown run's preparation (model, splits, reference outputs): its spec differs in variant lists only; not
    where its variants now need the ONNX conversion of a model file that the first preparation did not make."""
    work = opts.run_dir / "work"
    if not opts.extend or not all((work / f).exists() for f in ("prepare.json", "data.npz", "reference.npz")):
        return None
    prepared = json.loads((work / "prepare.json").read_text())
    if needs_onnx and prepared.get("native") and not prepared.get("conversion"):
        return None
    return prepared


def _history_of(spec: Spec, opts: RunOptions, env: dict):
    """The history database and this run's id in it, or (None, None) when history is off for this run."""
    if opts.no_history:
        return None, None
    from optbench.history.store import HistoryUnavailable, open_history, run_uid

    try:  # the history is an extra: a database locked, read-only or unreachable is skipped, said once
        history = open_history(opts.history, create=True)
        if history is None:
            return None, None
        return history, history.record_run(run_uid(opts.run_dir), spec.model_dump(mode="json"), env,
                                           opts.run_dir.resolve(), opts.mode)
    except HistoryUnavailable as e:
        sys.stderr.write(f"optbench: history: {e}; this run goes on without it (`optbench history import "
                         f"{opts.run_dir}` adds its rows later)\n")
        return None, None


def run_sweep(spec: Spec, opts: RunOptions) -> Path:
    from optbench.interpret import model_fixed_batch

    if not opts.no_history:
        from optbench.history.store import history_url

        history_url(opts.history)  # a malformed database URL is one line before anything is made
    variants = plan(spec, opts.mode, fixed_batch=model_fixed_batch(spec, opts.spec_path))
    if (n := sum(v.status == "planned" for v in variants)) > opts.max_variants:
        raise OptbenchError(f"the spec plans {n:,} variants to {opts.mode}, more than --max-variants "
                            f"{opts.max_variants} (at tens of seconds each, hours of machine time); narrow the spec "
                            f"(variants:, only:) or pass --max-variants {n}")
    done = {k: r for k, r in open_run_dir(spec, variants, opts).items() if k not in opts.retime}
    try:
        return _sweep(spec, opts, variants, done)
    finally:
        if opts.lock is not None:
            opts.lock.close()  # releases the run directory
            opts.lock = None


def _sweep(spec: Spec, opts: RunOptions, variants: list[Variant], done: dict[str, dict]) -> Path:
    import optbench.measure.contention as contention

    env = collect_env()
    (opts.run_dir / "env.json").write_text(json.dumps(env, indent=2))
    start = contention.snapshot()
    cache = ArtifactCache(opts.cache_dir, enabled=not opts.no_cache)
    try:
        cache.check_private()  # before anything runs: a cache others can write is refused, not used
    except CacheIntegrityError as e:
        raise OptbenchError(str(e)) from None
    history, run_id = _history_of(spec, opts, env)
    if history is not None and done:  # a kill between results.jsonl and the database: the resumed run fills the gap
        from optbench.history.store import HistoryUnavailable

        try:
            for vid in sorted(set(done) - history.stored_variants(run_id)):
                history.record_row(run_id, done[vid])
        except HistoryUnavailable as e:
            sys.stderr.write(f"optbench: history: {e}; this run goes on without it\n")
            history = None
    base = _row_base(spec, env)
    # known from the spec alone: rows skipped at plan time, written before the reference runs, name it too
    reference = reference_backend(spec.model.kind.framework)
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
        row = _with_reading_warnings(row, read)
        # the row, built here from its parts: the run's, the variant's, what its processes measured, the reference's
        full = normalize({**base, **_variant_cols(v, spec), **row, **opts.annotate.get(v.id, {}),
                          "interpretation": read,
                          "reference": (prepared or {}).get("reference"),
                          "reference_backend": (prepared or {}).get("reference_backend") or reference.name})
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
        if v.status == "skipped":
            progress.skip(v.reason)  # folded into one line: the run's output does not open with them
        else:
            progress.step(v.id, row["status"], ran=True)

    try:
        for v in variants:  # resumed and skipped rows first: they cost nothing
            if v.id in done:
                progress.step(v.id, done[v.id]["status"])
            elif v.status == "skipped":
                record(v, {"status": "skipped", "error": v.reason})
        progress.said_skipped()
        if to_run:
            gpus = _gpus_of(opts, env) if any(str(v.device).startswith("cuda") for v in to_run) else []
            if gpus and (opts.jobs > 1 or opts.executor == "ray" or len(gpus) > 1):
                import os

                os.environ.setdefault("OPTBENCH_GPUS", ",".join(gpus))
            needs_onnx = any(_takes_onnx(v, spec) for v in to_run)
            prepared = _reused_preparation(opts, needs_onnx) or _prepare(spec, opts, cache, needs_onnx=needs_onnx)
            from optbench.run.launchers import Jobs, launcher

            jobs = Jobs(job_of, log_of, spec.measure, record, lambda v: progress.show(v.id),
                        lambda v, text: progress.note(v.id, text))
            env["cluster"] = launcher(opts.executor, opts.jobs, gpus, opts.address).launch(to_run, jobs)
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


def _with_reading_warnings(row: dict, read: dict | None) -> dict:
    """A variant's row with what the model's reading warned of (contradictions, a stateful reference), unless the
    variant did not run."""
    if not read or row.get("status") in ("skipped", None):
        return row
    more = [warning("interpretation", w) for w in read.get("warnings") or []]
    if read.get("stateful"):
        more.append(warning("stateful", read["stateful"]))
    return {**row, "warnings": list(row.get("warnings") or []) + more} if more else row


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


def _gpus_of(opts: RunOptions, env: dict) -> list[str]:
    """The physical GPUs CUDA variants spread over: --gpus, else CUDA_VISIBLE_DEVICES, else every GPU the
    environment lists."""
    import os

    if opts.gpus is not None:
        known = {str(i) for i in range(len(env.get("gpus") or []))}
        if known and (missing := [g for g in opts.gpus if g not in known]):
            raise OptbenchError(f"--gpus {','.join(opts.gpus)}: no GPU {', '.join(missing)} on this machine (it has "
                                f"{len(known)})")
        return list(opts.gpus)
    visible = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip().isdigit()]
    return visible or [str(i) for i in range(len(env.get("gpus") or []))]


def _row_base(spec: Spec, env: dict) -> dict[str, Any]:
    return {"schema_version": SCHEMA_VERSION, "commit": env.get("commit"), "host": host_summary(env),
            "model": _model_name(spec), "model_format": spec.model.source}


def _model_name(spec: Spec) -> str:
    """The torchvision name, the entrypoint, a transformers folder as given, or a model file's (or folder's) name."""
    m = spec.model
    named = getattr(m, "name", None) or getattr(m, "entrypoint", None)
    if named or m.source == "transformers":
        return named or m.path
    return Path(m.path.rstrip("/")).name


def _variant_cols(v: Variant, spec: Spec) -> dict[str, Any]:
    return {"variant_id": v.id, "backend": v.backend, "backend_name": v.backend_name, "device": v.device,
            "precision": v.precision, "int8": v.int8, "fp16": v.fp16,
            "transform": v.transform, "batch_size": v.batch_size, "shape": dict(v.dims), "settings": v.settings,
            "error": None}


# ---------------------------------------------------------------- worker processes
def _job(spec: Spec, opts: RunOptions, cache: ArtifactCache, mode: str, **extra) -> dict:
    return {"mode": mode, "spec": spec.model_dump(mode="json"), "preload": worker_preload(spec),
            "spec_dir": str(opts.spec_path.parent.resolve()),
            "run_dir": str(opts.run_dir.resolve()), "cache_dir": str(cache.root.resolve()),
            "no_cache": opts.no_cache, **extra}


def _takes_onnx(v: Variant, spec: Spec) -> bool:
    """Whether a variant's backend runs an ONNX of the model (a model file of another framework is then converted
    when the run prepares), rather than a torch module or the file as given."""
    from optbench.backends import get_backend

    cls = get_backend(v.backend_name)
    return cls.consumes == "onnx" and spec.model.kind.framework not in cls.runs


def _prepare(spec: Spec, opts: RunOptions, cache: ArtifactCache, needs_onnx: bool = True) -> dict:
    log = opts.run_dir / "logs" / "prepare.log"
    log.parent.mkdir(exist_ok=True)
    result, proc = spawn(_job(spec, opts, cache, "prepare", needs_onnx=needs_onnx), spec.measure.timeout_s, None, log,
                         spec.measure.rss_limit_mb)
    if result is not None and result.get("status") == "failed" and result.get("user_error"):
        raise SpecError(result["error"])  # the spec must say what the model cannot show (one line, exit 2)
    if result is None or result.get("status") == "failed":
        why = (result or {}).get("error") or proc.get("killed_for") or crash_reason(proc, spec.measure.timeout_s)
        end = "" if result else f"; log tail: {tail(log, 300)!r}"
        raise OptbenchError(f"preparing the model and reference failed: {why}{end} (see {log})")
    (opts.run_dir / "work" / "prepare.json").write_text(json.dumps(result))
    public = {k: v for k, v in result.items() if k != "model_path"}
    (opts.run_dir / "reference.json").write_text(json.dumps(public, indent=2))
    if not opts.quiet:
        from optbench.interpret import load as load_interpretation

        interp = load_interpretation(opts.run_dir)
        if interp is not None:
            print("how optbench reads the model:\n" + interp.table(), flush=True)
    return result
