"""Run a deploy search: the variants that pass every accuracy budget (from the spec's own run, made here, or from
a given run directory), then the strategy's steps (:mod:`optbench.deploy.strategy`), each step's candidates of one
variant measured in one worker process (:mod:`optbench.deploy.measure`), every candidate a row of
``candidates.jsonl``; then the answer (:mod:`optbench.deploy.answer`), its fragment and Triton configuration, and
``deploy.md``. A resumed search replays the candidates it has rows for and measures the rest."""

from __future__ import annotations

import fnmatch
import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optbench.clock as clock
from optbench.deploy import answer as ans
from optbench.deploy.row import CANDIDATES, CandidateRow, append, read
from optbench.deploy.space import Config, Grid, prepared_sizes
from optbench.deploy.strategy import Outcome, Step, search
from optbench.errors import Interrupted, OptbenchError, RunDirError
from optbench.spec.models import Spec

RECORD = "deploy.json"
ACCURACY = "accuracy"  # the spec's own run, inside the deploy directory
OURS = (RECORD, CANDIDATES, "deploy.md", "fragment.yaml", "frontier.svg")
OUR_DIRS = ("serving", "logs", "triton")
SERVING_KEYS = ("min_duration_ms", "max_duration_ms", "min_query_count", "samples", "peak_tolerance", "peak_probes",
                "energy", "idle_s", "switch_interval_ms")  # serving.cuda_graphs is each candidate's own (Config)
SERVING_COLUMNS = ("serving_peak_qps", "energy_j_per_item", "soak_rss_mb_per_min", "soak_p99_drift")


@dataclass
class DeployOptions:
    run_dir: Path
    spec_path: Path
    qps: float
    p99_ms: float
    objective: str = "gpus"
    max_devices: int | None = None
    memory_gb: float | None = None
    headroom: float = 0.2
    grid: Grid = field(default_factory=Grid)
    trials: int = 40
    time_budget_s: float | None = None
    from_run: Path | None = None
    variants: list[str] = field(default_factory=lambda: ["*"])
    serving: dict = field(default_factory=dict)   # LoadGen settings over the spec's serving section
    force: bool = False
    resume: bool = False
    cache_dir: Path | None = None
    no_cache: bool = False
    quiet: bool = False
    history: str | None = None
    no_history: bool = False
    say: Any = print

    @property
    def memory_limit(self) -> int | None:
        return int(self.memory_gb * 2**30) if self.memory_gb is not None else None


def accuracy_verdicts(run_dir: Path, constraints: list) -> dict[str, list[str]]:
    """Each measured variant of the run and the accuracy checks it fails (empty: it passes): every check of
    ``optbench check`` but the serving ones (the search measures serving itself), and the spec's constraints on
    columns other than serving's."""
    from optbench.check import SERVING_KEYS as SERVING_BUDGETS
    from optbench.check import check_constraints, check_run
    from optbench.store import final_rows

    rows = final_rows(run_dir)
    out: dict[str, list[str]] = {vid: [] for vid, r in rows.items() if r.get("status") == "ok"}
    for r in check_run(run_dir).results:
        if r.variant not in out or r.passed or r.warning:
            continue
        if r.check.startswith(("serving", "soak.")) or r.check in SERVING_BUDGETS:
            continue
        out[r.variant].append(f"{r.check}: {r.message}")
    for vid, r in rows.items():  # a variant that did not run is no candidate either: its reason is its verdict
        if r.get("status") in ("failed", "timeout", "skipped"):
            out[vid] = [f"status: {r['status']}: {str(r.get('error') or '').splitlines()[0][:300] if r.get('error') else ''}"]
    for vid, bad in out.items():
        if rows[vid].get("status") != "ok":
            continue
        for r in check_constraints(rows[vid], [c for c in constraints if c.column not in SERVING_COLUMNS]):
            if not r.passed:
                bad.append(f"{r.check}: {r.message}")
    return out


class Deployer:
    def __init__(self, spec: Spec, opts: DeployOptions) -> None:
        from optbench.constraint import parse_constraint

        self.spec, self.opts = spec, opts
        self.constraints = [parse_constraint(t, "constraints") for t in spec.constraints]
        self.started = clock.monotonic()
        self.acc_dir = Path(opts.from_run) if opts.from_run else opts.run_dir / ACCURACY
        self.base = self._serving_base()
        self.record: dict[str, Any] = {"settings": self._searched(), "asked": self._asked(), "steps": [],
                                       "elapsed_s": 0.0, "stopped": "", "notes": []}
        self.rows: dict[str, CandidateRow] = {}

    # ------------------------------------------------------------ settings
    def _serving_base(self) -> dict:
        """The LoadGen settings every candidate is measured with: the spec's serving section's, then the command
        line's."""
        s = self.spec.serving.model_dump(mode="json", exclude_unset=True) if self.spec.serving is not None else {}
        base = {k: s[k] for k in SERVING_KEYS if k in s}
        base.update(self.opts.serving)
        return base

    def _searched(self) -> dict:
        """What decides the candidates and their figures: a resumed search must share it."""
        o = self.opts
        return {"p99_ms": o.p99_ms, "grid": o.grid.to_dict(), "memory_gb": o.memory_gb, "variants": list(o.variants),
                "serving": self.base, "from_run": str(o.from_run) if o.from_run else None,
                "energy_prunes": o.objective == "energy"}

    def _asked(self) -> dict:
        """What only the answer reads (a resumed search may change it)."""
        o = self.opts
        return {"qps": o.qps, "objective": o.objective, "max_devices": o.max_devices, "headroom": o.headroom,
                "trials": o.trials, "time_budget_s": o.time_budget_s}

    def _open(self) -> None:
        d, o = self.opts.run_dir, self.opts
        old = d / RECORD
        if d.exists() and not d.is_dir():
            raise RunDirError(f"--run-dir {d} is a file, not a directory")
        if o.resume:
            if not old.exists():
                raise RunDirError(f"--resume: {d} holds no deploy search ({RECORD})")
            kept = json.loads(old.read_text())
            before, now = kept.get("settings") or {}, self.record["settings"]
            if before != now:
                changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
                shown = "; ".join(f"{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in changed[:3])
                raise RunDirError(f"--resume: the search differs from the one {d} made ({shown}); start a new run "
                                  f"directory, or --force")
            self.started -= float(kept.get("elapsed_s") or 0.0)
            return
        entries = [p.name for p in d.iterdir()] if d.exists() else []
        if old.exists() or (d / CANDIDATES).exists():
            if not o.force:
                raise RunDirError(f"{d} already holds a deploy search; pass --resume to continue it or --force to "
                                  "start over")
            for name in OURS:
                (d / name).unlink(missing_ok=True)
            for name in OUR_DIRS + (() if o.from_run else (ACCURACY,)):
                shutil.rmtree(d / name, ignore_errors=True)
        elif entries:
            raise RunDirError(f"{d} is not empty and holds no deploy search ({', '.join(sorted(entries)[:4])}); "
                              "choose a new or empty --run-dir")
        d.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ accuracy
    def _accuracy(self) -> tuple[list[str], dict[str, list[str]]]:
        """The variants that pass every accuracy budget and that --variants selects, and every verdict."""
        from optbench.store import final_rows

        if self.opts.from_run is None:
            self._accuracy_run()
        elif not (self.acc_dir / "results.jsonl").exists():
            raise RunDirError(f"--from-run {self.acc_dir} holds no results.jsonl; is it a run directory?")
        verdicts = accuracy_verdicts(self.acc_dir, self.constraints)
        rows = final_rows(self.acc_dir)
        passing = [vid for vid, bad in verdicts.items() if not bad
                   and any(fnmatch.fnmatch(vid, p) for p in self.opts.variants)]
        self.acc_rows = rows
        return passing, verdicts

    def _accuracy_run(self) -> None:
        """The spec's variants built and judged (and timed, as its measure section says) in ``accuracy/``; its
        serving section is what this search replaces, so it does not run there."""
        from optbench.run.sweep import RunOptions, run_sweep
        from optbench.specfile.load import validate

        o = self.opts
        spec = validate({**self.spec.model_dump(mode="json"), "serving": None}, {}, str(o.spec_path))
        resume = (self.acc_dir / "results.jsonl").exists()
        ro = RunOptions(run_dir=self.acc_dir, spec_path=o.spec_path, resume=resume, cache_dir=o.cache_dir,
                        no_cache=o.no_cache, quiet=o.quiet, history=o.history, no_history=o.no_history)
        try:
            run_sweep(spec, ro)
        except Interrupted:
            raise Interrupted(self._resume_line("interrupted while the variants were judged")) from None

    def _resume_line(self, what: str) -> str:
        o = self.opts
        return (f"{what}; what was measured is kept. Resume with: optbench deploy {o.spec_path} --qps {o.qps:g} "
                f"--p99-ms {o.p99_ms:g} --run-dir {o.run_dir} --resume")

    # ------------------------------------------------------------ the loop
    def run(self) -> dict:
        if self.opts.from_run is not None and not (self.acc_dir / "results.jsonl").exists():
            raise RunDirError(f"--from-run {self.acc_dir} holds no results.jsonl; is it a run directory?")
        self._check_energy()
        self._check_variants()
        self._open()
        if not self.opts.resume:
            self._save()  # from here on the directory holds a search that --resume continues
        passing, verdicts = self._accuracy()
        self.record["accuracy"] = {"run_dir": str(self.acc_dir), "passing": passing, "verdicts": verdicts}
        self._save()
        if not passing:
            ok = [v for v, bad in verdicts.items() if not bad]
            self.record["stopped"] = "no variant passes every accuracy budget" if not ok else \
                f"--variants {' '.join(self.opts.variants)} selects none of the passing variants ({', '.join(ok[:4])})"
            self._finish()
            return self.record
        _ = self.acc_spec
        self.rows = read(self.opts.run_dir / CANDIDATES)
        gen = search(passing, self.opts.grid, self.opts.trials, float(self.base.get("peak_tolerance", 0.1)),
                     energy=self.opts.objective == "energy", given=self._given(passing),
                     captures=self._captures(passing))
        msg = next(gen, None)
        try:
            while msg is not None:
                got = self._step(msg)
                if got is None:
                    break
                msg = gen.send(got)
        except StopIteration:
            pass
        if not self.record["stopped"]:
            measured = sum(1 for s in self.record["steps"] for c in s["candidates"] if c["status"] != "skipped")
            self.record["stopped"] = f"trial limit ({self.opts.trials} candidates)" \
                if measured >= self.opts.trials else "the strategy ended"
        self._finish()
        return self.record

    def _captures(self, passing: list[str]) -> frozenset[str]:
        """The passing variants whose serving lanes capture CUDA graphs (a backend that does, on a CUDA device)."""
        from optbench.backends import get_backend
        from optbench.errors import SpecError

        _ = self.acc_spec
        out = set()
        for vid in passing:
            v = self.variants.get(vid) or {}
            try:
                captures = get_backend(str(v.get("backend_name"))).captures_cuda_graphs
            except SpecError:
                captures = False
            if captures and str(v.get("device") or "").startswith("cuda"):
                out.add(vid)
        return frozenset(out)

    def _given(self, passing: list[str]) -> list[Config]:
        """The spec's own serving configuration (its lanes, dynamic batching and CUDA graphs, graphs where the
        variant's lanes capture them) on each passing variant, where the spec's serving section sets lanes or
        batching: measured first, the answer is compared with it."""
        s = self.spec.serving
        if s is None or not ({"instances", "dynamic_batching"} & s.model_fields_set):
            return []
        captures = self._captures(passing) if s.cuda_graphs else frozenset()
        db = s.dynamic_batching
        if db is None:
            return [Config(v, s.instances, 1, 0.0, "pow2", v in captures) for v in passing]
        rule = "ends" if db.sizes is not None and sorted(db.sizes) == [1, db.max_batch] else "pow2"
        if db.sizes is not None and tuple(sorted(db.sizes)) not in ((1, db.max_batch), prepared_sizes(db.max_batch,
                                                                                                       "pow2")):
            self.record["notes"].append(f"the spec's serving.dynamic_batching.sizes {db.sizes} is measured as the "
                                        f"{rule} rule ({list(prepared_sizes(db.max_batch, rule))})")
        return [Config(v, s.instances, db.max_batch, db.max_delay_ms if db.max_batch > 1 else 0.0, rule, v in captures)
                for v in passing]

    def _elapsed(self) -> float:
        return clock.monotonic() - self.started

    def _step(self, step: Step) -> dict[Config, Outcome] | None:
        index = len(self.record["steps"])
        todo = [c for c in step.candidates if c.key not in self.rows]
        budget = self.opts.time_budget_s
        if todo and budget is not None and self._elapsed() >= budget:
            self.record["stopped"] = f"time budget ({budget:g} s) spent after {index} step(s)"
            return None
        by_variant: dict[str, list[Config]] = {}
        for c in todo:
            by_variant.setdefault(c.variant, []).append(c)
        for vid, configs in by_variant.items():
            if budget is not None and self._elapsed() >= budget:
                break
            self._measure(vid, configs, index, step.phase)
        if any(c.key not in self.rows for c in step.candidates):  # the time budget ended the step midway
            self.record["stopped"] = f"time budget ({budget or 0:g} s) spent in step {index}; --resume goes on"
            self.record["elapsed_s"] = round(self._elapsed(), 1)
            self._save()
            return None
        out = {c: _outcome(self.rows[c.key]) for c in step.candidates if c.key in self.rows}
        self.record["steps"].append({"step": index, "phase": step.phase, "replayed": not todo, "candidates": [
            {"key": c.key, "status": self.rows[c.key].status, "peak_qps": self.rows[c.key].peak_qps}
            for c in step.candidates if c.key in self.rows]})
        self._say_step(step, index, not todo)
        self.record["elapsed_s"] = round(self._elapsed(), 1)
        self._save()
        return out

    def _measure(self, vid: str, configs: list[Config], index: int, phase: str) -> None:
        """``configs`` of variant ``vid`` measured in worker processes until each has a row: a process that dies
        leaves the candidate it was on a row with why (out of memory where the kernel killed it), and the rest go
        to a new process."""
        from optbench.run.supervise import row_from_worker, spawn

        measure = self.acc_spec.measure
        log_dir = self.opts.run_dir / "logs"
        log_dir.mkdir(exist_ok=True)
        path = self.opts.run_dir / CANDIDATES
        left, attempt = list(configs), 0
        while left:
            job = self._job(vid, left, index, phase)
            log = log_dir / f"step{index}-{vid}-{attempt}.log"
            timeout = float(measure.timeout_s) + len(left) * _per_candidate_s(self.base)
            try:
                result, proc = spawn(job, timeout, measure.memory_limit_mb, log, measure.rss_limit_mb)
            except KeyboardInterrupt:
                raise Interrupted(self._resume_line("interrupted")) from None
            self.rows = read(path)
            left = [c for c in left if c.key not in self.rows]
            if not left or (result or {}).get("stopped"):  # all measured, or the time budget stopped the worker
                return
            worker = row_from_worker(result, proc, timeout, log)
            if worker.get("status") == "ok" and not result.get("measured") == 0:
                attempt += 1
                continue  # it stopped after a run that hung: the rest in a fresh process
            err = str(worker.get("error") or "the worker ended before it measured this candidate")[:600]
            if worker.get("signal") == "SIGKILL" and not proc.get("timed_out"):
                err = f"the serving process was killed (SIGKILL), most likely out of memory; {err}"
            status = "oom" if "out of memory" in err.lower() or "outofmemory" in err.lower().replace(" ", "") \
                else "failed"
            # a process that failed before serving (the session would not build) fails every candidate alike
            hit = left[:1] if worker.get("failed_stage") in (None, "serving") else left
            for c in hit:
                row = CandidateRow.of(c, status, reason=err, step=index, phase=phase,
                                      backend=self.variants[vid]["backend"], precision=self.variants[vid]["precision"])
                append(path, row)
                self.rows[c.key] = row
            left, attempt = left[len(hit):], attempt + 1

    def _job(self, vid: str, configs: list[Config], index: int, phase: str) -> dict:
        from optbench.cache import default_cache_dir
        from optbench.run.retime import locate

        row = self.acc_rows[vid]
        side = locate(self.acc_dir, row)
        # the ONNX file the row timed, where it is still the file it was (a torch row's module is built again)
        recorded = str(side.artifact) if not isinstance(side, str) and not side.rebuilt else None
        cache = side.cache_dir if not isinstance(side, str) else (self.opts.cache_dir or default_cache_dir())
        known = [[c.to_dict(), _outcome(r).__dict__] for r in self.rows.values() for c in [r.config]
                 if c.variant == vid]
        from optbench.run.supervise import backend_preload

        return {"mode": "call", "entry": "optbench.deploy.measure:run_deploy_job", "spec": self.acc_spec.model_dump(mode="json"), "spec_dir": self.spec_dir,
                "preload": backend_preload({self.variants[vid]["backend_name"]}),
                "run_dir": str(self.acc_dir.resolve()), "cache_dir": str(cache), "no_cache": False,
                "variant": self.variants[vid], "recorded": recorded, "configs": [c.to_dict() for c in configs],
                "known": known, "serving": self.base, "p99_ms": self.opts.p99_ms,
                "out_dir": str(self.opts.run_dir.resolve()), "step": index, "phase": phase,
                "memory_limit_bytes": self.opts.memory_limit, "deadline": self._deadline()}

    def _deadline(self) -> float | None:
        """The wall-clock time after which a worker starts no further candidate (the time budget's end)."""
        budget = self.opts.time_budget_s
        return None if budget is None else clock.wall() + max(0.0, budget - self._elapsed())

    @property
    def acc_spec(self) -> Spec:
        if not hasattr(self, "_acc_spec"):
            import yaml

            from optbench.plan import plan
            from optbench.specfile.load import validate

            path = self.acc_dir / "spec.yaml"
            self._acc_spec = validate(yaml.safe_load(path.read_text()), {}, str(path))
            self.variants = {v.id: v.to_dict() for v in plan(self._acc_spec)}
            prepared = json.loads((self.acc_dir / "work" / "prepare.json").read_text())
            self.spec_dir = str(prepared.get("spec_dir") or self.opts.spec_path.parent.resolve())
        return self._acc_spec

    def _check_variants(self) -> None:
        """A --variants pattern that selects no variant of the spec (or of --from-run's plan) is one line."""
        if self.opts.from_run is not None and (self.acc_dir / "plan.json").exists():
            ids = json.loads((self.acc_dir / "plan.json").read_text())
        else:
            from optbench.plan import plan

            ids = [v.id for v in plan(self.spec)]
        for pattern in self.opts.variants:
            if not any(fnmatch.fnmatch(i, pattern) for i in ids):
                raise OptbenchError(f"--variants {pattern!r} selects none of the variants {', '.join(ids[:4])}"
                                    f"{', ...' if len(ids) > 4 else ''}")

    def _check_energy(self) -> None:
        """The energy objective on a device without an energy counter is one line, before anything runs."""
        if self.opts.objective != "energy":
            return
        if self.base.get("energy") is False:
            raise OptbenchError("--objective energy, but the spec's serving.energy is false: no energy is read")
        from optbench.measure.serving.energy import open_counter
        from optbench.plan import plan

        planned = [v for v in plan(self.spec) if v.status == "planned"]
        for device in sorted({v.device for v in planned}):
            counter, why = open_counter(device)
            if counter is None:
                raise OptbenchError(f"--objective energy: the energy per item cannot be measured on {device}: {why}")

    # ------------------------------------------------------------ the answer
    def _finish(self) -> None:
        from optbench.deploy.report import write_outputs

        passing = set(self.record["accuracy"]["passing"])
        rows = [r for r in read(self.opts.run_dir / CANDIDATES).values() if r.variant_id in passing]
        o = self.opts
        self.record["asked"] = self._asked()
        self.record["answer"] = ans.choose(rows, o.qps, o.headroom, o.max_devices, o.objective, o.memory_limit)
        w = self.record["answer"].get("winner")
        given = {c.key for c in self._given(sorted(passing))}
        mine = [r for r in rows if r.config.key in given and w is not None and r.variant_id == w["variant_id"]]
        if mine:
            g = mine[0]
            self.record["answer"]["against_given"] = {
                **ans.described(g), "ratio": (w["peak_qps"] / g.peak_qps) if g.peak_qps else None,
                "verdict": self.record["answer"]["verdicts"].get(g.config.key)}
        self.record["elapsed_s"] = round(self._elapsed(), 1)
        write_outputs(self, rows)
        self._save()

    def _save(self) -> None:
        (self.opts.run_dir / RECORD).write_text(json.dumps(self.record, indent=1, default=str))

    def _say_step(self, step: Step, index: int, replayed: bool) -> None:
        if self.opts.quiet:
            return
        for c in step.candidates:
            r = self.rows.get(c.key)
            if r is None:
                continue
            if r.status == "measured":
                what = (f"peak {r.peak_qps:,.0f} QPS at p99 {_num(r.peak_p99_ms)} ms" if r.peak_qps else
                        "no QPS met the bound") + (f", memory {r.memory_bytes / 2**20:,.0f} MiB" if r.memory_bytes
                                                   else "") + (f", {r.j_per_item:.3g} J/item" if r.j_per_item else "")
            else:
                what = f"{r.status}: {r.reason}"
            self.opts.say(f"step {index} {step.phase}{' (replayed)' if replayed else ''}: {c.label()}: {what}")


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else "-"


def _outcome(r: CandidateRow) -> Outcome:
    return Outcome(r.status, r.peak_qps, r.memory_bytes, r.j_per_item)


def _per_candidate_s(base: dict) -> float:
    from optbench.deploy.measure import budget_s

    return budget_s(base, int(base.get("peak_probes", 10)))


def delays_within(delays: list[float], p99_ms: float) -> list[float]:
    """The queue delays worth trying under the bound: those below half of it (a request that waits longer has half
    the bound or less left to run)."""
    return sorted(d for d in set(delays) if d < p99_ms / 2 or math.isclose(d, p99_ms / 2))


def deploy(spec: Spec, opts: DeployOptions) -> dict:
    return Deployer(spec, opts).run()
