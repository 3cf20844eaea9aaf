"""Run a search: each step's candidates become entries of the tune run's spec and run through the normal sweep
(built, judged and timed as any variant; their rows carry the step, its phase and the fallbacks), the rows are
judged as ``optbench check`` judges them, and the strategy decides the next step. A resumed search replays the
candidates whose rows it already has instead of timing them again; rankings of node groups are replayed from
``search.json``, where every step and the answer are kept."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optbench.clock as clock
from optbench.errors import Interrupted, OptbenchError, RunDirError
from optbench.spec.models import Spec
from optbench.tune import answer as ans
from optbench.tune import space as sp
from optbench.tune.strategy import Candidate, Rank, Step, search

SEARCH_FILE = "search.json"


@dataclass
class TuneOptions:
    run_dir: Path
    spec_path: Path
    force: bool = False
    resume: bool = False
    cache_dir: Path | None = None
    no_cache: bool = False
    quiet: bool = False
    history: str | None = None
    no_history: bool = False
    constraints: list[str] = field(default_factory=list)  # --constraint, over the spec's constraints:
    say: Any = print


@dataclass
class Record:
    """What search.json keeps: every step with its candidates and their outcomes, the rankings, the answer."""

    settings: dict
    point: dict
    backends: list[str]
    steps: list[dict] = field(default_factory=list)
    rankings: dict[str, dict] = field(default_factory=dict)
    elapsed_s: float = 0.0
    stopped: str = ""
    notes: list[str] = field(default_factory=list)
    answer: dict = field(default_factory=dict)
    confirmations: list[dict] = field(default_factory=list)  # the answer timed again (search.confirm)

    def save(self, run_dir: Path) -> None:
        (run_dir / SEARCH_FILE).write_text(json.dumps(self.__dict__, indent=1, default=str))


class Tuner:
    def __init__(self, spec: Spec, opts: TuneOptions) -> None:
        from optbench.constraint import parse_constraint

        if spec.search is None:
            raise OptbenchError(f"{opts.spec_path} has no search: section; add one (at least `search: {{}}`) to say "
                                "what optbench tune looks for")
        self.spec, self.opts = spec, opts
        self.point, self.base = sp.point_of(spec), sp.base_int8(spec)
        self.backends = sp.search_backends(spec)
        texts = list(spec.constraints) + list(opts.constraints)
        self.constraints = [parse_constraint(t, "constraints") for t in texts]
        self.space = sp.space_of(spec)
        self.entries: dict[Candidate, tuple[str, dict | None]] = {}  # every candidate so far, in order
        self.groups: dict[str, dict[str, list[str]]] = {}   # ranked graph's key -> group -> nodes
        self.every: dict[str, list[str]] = {}               # ranked graph's key -> every node of it
        self.variants: dict[Candidate, dict] = {}
        self._planned_for = -1
        self.record = Record(spec.search.model_dump(mode="json"), {"batch": self.point.batch, "dims": self.point.dims},
                             self.backends)
        self.started = clock.monotonic()
        self._check_budgets()

    def _check_budgets(self) -> None:
        from optbench.check import budget_for

        for precision in ("fp32", "fp16", "int8"):  # an unknown budget key is one clear line, before anything runs
            budget_for({"precision": precision, "variant_id": "", "transform": "none"},
                       {**self.spec.budgets, **self.spec.search.budgets}, {})

    # ------------------------------------------------------------ the loop
    def run(self) -> Record:
        self._open()
        gen = search(self.space)
        msg = next(gen, None)
        try:
            while msg is not None:
                reply = self._rank(msg.candidate) if isinstance(msg, Rank) else self._step(msg)
                if reply is None:
                    break
                msg = gen.send(reply)
        except StopIteration:
            pass
        if not self.record.stopped:
            self.record.stopped = "the strategy ended" if self._trials() < self.space.trials else \
                f"trial limit ({self.space.trials} candidates)"
        self.record.notes = list(dict.fromkeys(self.record.notes + self.space.notes))
        self._answer()
        self._confirm()
        return self.record

    def _trials(self) -> int:
        return sum(len(s["candidates"]) for s in self.record.steps)

    def _open(self) -> None:
        d = self.opts.run_dir
        old = d / SEARCH_FILE
        if self.opts.resume:
            from optbench.run.sweep import MARKER

            marker = json.loads((d / MARKER).read_text()) if (d / MARKER).exists() else {}
            if marker.get("mode") != "tune":
                raise RunDirError(f"--resume: {d} is not a search made by optbench tune")
            kept = json.loads(old.read_text()) if old.exists() else {"settings": self.record.settings}
            before, now = _searched(kept.get("settings") or {}), _searched(self.record.settings)
            if before != now:
                changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
                shown = "; ".join(f"search.{k}: {before.get(k)!r} then, {now.get(k)!r} now" for k in changed[:3])
                raise RunDirError(f"--resume: the spec's search: section differs from the one {d} was searched with "
                                  f"({shown}); start a new run directory, or --force")
            self.record.rankings = kept.get("rankings") or {}
            self.record.confirmations = kept.get("confirmations") or []
            self.started -= float(kept.get("elapsed_s") or 0.0)
        elif old.exists() or (d / "results.jsonl").exists():
            if not self.opts.force:
                raise RunDirError(f"{d} already holds a run; pass --resume to continue its search or --force to "
                                  "start over")
            if not (d / "plan.json").exists():
                raise RunDirError(f"{d} is not an optbench run; choose a new or empty --run-dir")
            (d / "results.jsonl").unlink(missing_ok=True)  # the first step starts the run over (--force)
            old.unlink(missing_ok=True)

    def _step(self, step: Step) -> dict | None:
        """Run (or replay) one step's candidates; their outcomes, or None where the time budget ends the search."""
        new = [c for c in step.candidates if c not in self.entries]
        for c in new:
            self.entries[c] = (c.kind, self._settings(c))
        index = len(self.record.steps)
        annotate, planned = {}, self._plan()
        for c in step.candidates:
            for v in planned.get(c, {}).values():
                annotate[v.id] = {"search_step": index, "search_phase": step.phase, "fallbacks": self._fallbacks(c)}
        todo = [c for c in step.candidates if not self._have_rows(c)]
        budget = self.spec.search.time_budget_s
        if todo and budget is not None and self._elapsed() >= budget:
            self.record.stopped = f"time budget ({budget:g} s) spent after {index} step(s)"
            return None
        if todo:
            self._sweep(annotate, first=index == 0 and not self.opts.resume)
        judged = ans.judge_run(self.opts.run_dir, self.constraints)
        outcomes = {c: self._outcome(c, judged) for c in step.candidates}
        self.record.steps.append({"step": index, "phase": step.phase, "replayed": not todo, "candidates": [
            {"key": c.key, "label": _label(c), "fallbacks": self._fallbacks(c),
             "variants": {b: v.id for b, v in self._plan().get(c, {}).items()},
             "outcome": outcomes[c].__dict__, **self._binding(c, judged)} for c in step.candidates]})
        self._say_step(self.record.steps[-1])
        self.record.elapsed_s = round(self._elapsed(), 1)
        self.record.save(self.opts.run_dir)
        return outcomes

    def _elapsed(self) -> float:
        return clock.monotonic() - self.started

    # ------------------------------------------------------------ candidates as variants
    def _settings(self, c: Candidate) -> dict | None:
        start = Candidate(c.kind, c.calib)
        return sp.settings_of(c, self.base, self.groups.get(start.key, {}), self.every.get(start.key, []))

    def _fallbacks(self, c: Candidate) -> dict[str, list[str]]:
        return c.by_precision()

    def spec_dict(self) -> dict:
        return sp.tune_spec(self.spec, self.point, self.backends, list(self.entries.values()), self.opts.constraints)

    def _plan(self) -> dict[Candidate, dict]:
        """Each candidate's variants by backend, planned from the tune spec (again only when candidates were added)."""
        from optbench.plan import plan
        from optbench.specfile.load import validate

        if self._planned_for != len(self.entries):
            spec = validate(self.spec_dict(), {}, str(self.opts.spec_path))
            keys = {sp.entry_key(k, s): c for c, (k, s) in self.entries.items()}
            self.variants = sp.variant_ids(plan(spec), keys)
            self._planned_for = len(self.entries)
        return self.variants

    def _have_rows(self, c: Candidate) -> bool:
        from optbench.store import final_rows

        if not (self.opts.run_dir / "results.jsonl").exists():
            return False
        rows = final_rows(self.opts.run_dir)
        return all(v.id in rows for v in self._plan().get(c, {}).values())

    def _sweep(self, annotate: dict, first: bool, retime: list[str] | None = None) -> None:
        from optbench.run.sweep import RunOptions, run_sweep
        from optbench.specfile.load import validate

        o = self.opts
        spec = validate(self.spec_dict(), {}, str(o.spec_path))
        ro = RunOptions(run_dir=o.run_dir, spec_path=o.spec_path, force=o.force and first, cache_dir=o.cache_dir,
                        no_cache=o.no_cache, quiet=o.quiet, mode="tune", history=o.history, no_history=o.no_history,
                        extend=not first, annotate=annotate, retime=list(retime or []))
        try:
            run_sweep(spec, ro)
        except Interrupted:
            raise Interrupted(f"interrupted; the candidates measured so far are kept. Resume the search with: "
                              f"optbench tune {o.spec_path} --run-dir {o.run_dir} --resume") from None

    def _primary(self, c: Candidate, judged: dict[str, ans.Judged]) -> tuple[str, ans.Judged] | None:
        """The first search backend that ran the candidate, and its row judged: it decides for the strategy."""
        vs = self._plan().get(c, {})
        return next(((b, judged[vs[b].id]) for b in self.backends if b in vs and vs[b].id in judged
                     and judged[vs[b].id].row.get("status") != "skipped"), None)

    def _outcome(self, c: Candidate, judged: dict[str, ans.Judged]):
        from optbench.spec.defaults import config_defaults
        from optbench.tune.strategy import Outcome

        found = self._primary(c, judged)
        if found is None:
            return Outcome(False, False, float("-inf"))
        b, j = found
        fp32 = self._plan().get(Candidate("fp32"), {}).get(b)
        base = judged.get(fp32.id) if fp32 is not None else None
        return ans.outcome(j, base, config_defaults("budgets")["latency"]["min_effect"])

    def _binding(self, c: Candidate, judged: dict[str, ans.Judged]) -> dict:
        """The check that bound the candidate (its worst margin) and the row's value of it, for the record."""
        found = self._primary(c, judged)
        return {"binding": found[1].binding, "value": found[1].value} if found else {}

    # ------------------------------------------------------------ rankings (optbench explain)
    def _rank(self, c: Candidate) -> list[str]:
        """The node groups of ``c``'s graph that introduce error, worst first (explained on the first backend's
        variant, or replayed from the record)."""
        from optbench.explain.variant import explain_variant

        kept = self.record.rankings.get(c.key)
        if kept is None:
            vs = self._plan().get(c, {})
            vid = next((vs[b].id for b in self.backends if b in vs), None)
            if vid is None:
                return []
            s = self.spec.search
            loc = explain_variant(self.opts.run_dir, vid, items=s.explain_items, seed=s.seed)
            kept = {"variant": vid, "groups": [[g, err, nodes] for g, err, nodes in loc.groups(converted_only=True)],
                    "all_nodes": loc.all_nodes, "reproduced": loc.reproduced,
                    "reproduction": loc.reproduction.sentence() if loc.reproduction is not None else "not checked"}
            self.record.rankings[c.key] = kept
            self.record.save(self.opts.run_dir)
        if not kept.get("reproduced", False):  # a ranking of what explain ran, not of the row: not acted on
            why = kept.get("reproduction") or "it was made before explain checked that it reproduces the row"
            note = f"the node ranking of {kept['variant']} was not used: {why}"
            self.record.notes = list(dict.fromkeys(self.record.notes + [note]))
            if not self.opts.quiet:
                self.opts.say(note)
            return []
        self.groups[c.key] = {g: nodes for g, _, nodes in kept["groups"]}
        self.every[c.key] = list(kept["all_nodes"])
        if not self.opts.quiet:
            top = ", ".join(f"{g} ({err:.3g})" for g, err, _ in kept["groups"][:5])
            self.opts.say(f"ranked {len(kept['groups'])} node groups of {kept['variant']}: {top}")
        return [g for g, _, _ in kept["groups"]]

    # ------------------------------------------------------------ the answer
    def _answer(self) -> None:
        from optbench.spec.defaults import config_defaults

        if not (self.opts.run_dir / "results.jsonl").exists():
            return
        judged = ans.judge_run(self.opts.run_dir, self.constraints)
        fp32 = self._plan().get(Candidate("fp32"), {})
        fp32_of = {b: judged[v.id] for b, v in fp32.items() if v.id in judged}
        out = ans.answer(judged, fp32_of, config_defaults("budgets")["latency"]["min_effect"])
        self._paired_verdicts(out)
        for key in ("winner", "int8_winner", "closest", "closest_int8"):
            if key in out:
                entry = next(b for b in self.spec.model_dump(mode="json")["backends"]
                             if (b.get("label") or b["name"]) == out[key]["backend"])
                out[key]["fragment"] = ans.fragment({**out[key], "backend": entry}, self.point.batch, self.point.dims)
        self.record.answer = out
        self.record.elapsed_s = round(self._elapsed(), 1)
        self.record.save(self.opts.run_dir)

    def _confirm(self) -> None:
        """Where the answer's verdict against fp32 is inconclusive (the machine was busy while a side was timed, or
        the rounds' noise hides the difference), time the winner(s) and fp32 again, at most ``search.confirm``
        times: in pairs, alternately, as ``check --baseline`` re-times (the paired verdict replaces the answer's),
        or, where a side cannot be re-timed so (a backend that runs the torch module), as rows of the same run,
        back to back, the newer rows replacing the older ones (so `check`, `compare` and the report read what
        decided). Every attempt, with the verdicts before and after, is kept."""
        from optbench.store import final_rows

        tries, limit, budget = self.record.confirmations, self.spec.search.confirm, self.spec.search.time_budget_s
        while len(tries) < limit:
            a = self.record.answer
            open_ = {w["variant_id"]: w["vs_fp32"] for k in ("winner", "int8_winner")
                     if (w := a.get(k)) and (w.get("vs_fp32") or {}).get("word") == "inconclusive"}
            if not open_:
                return
            if budget is not None and self._elapsed() >= budget:
                self.record.notes.append(f"the answer's inconclusive verdict was not timed again: the time budget "
                                         f"({budget:g} s) was spent")
                break
            ids = sorted(set(open_) | {vs["variant_id"] for vs in open_.values()})
            rows = final_rows(self.opts.run_dir)
            if not self.opts.quiet:
                self.opts.say(f"confirm {len(tries) + 1}/{limit}: timing {', '.join(ids)} again "
                              f"({'; '.join(vs['line'] for vs in open_.values())})")
            paired = self._paired(open_, rows)
            if isinstance(paired, str):  # a side cannot be re-timed in pairs: the rows are timed again instead
                open_ = {vid: vs for vid, vs in open_.items() if vs.get("settles", True)}
                self.record.notes = list(dict.fromkeys(self.record.notes + [
                    f"the answer was not re-timed in pairs ({paired})" + ("" if open_ else ": timing its rows again "
                                                                          "cannot settle it (the settings decide)")]))
                if not open_:
                    break
                ids = sorted(set(open_) | {vs["variant_id"] for vs in open_.values()})
                keep = {i: {k: rows[i].get(k) for k in ("search_step", "search_phase", "fallbacks")} for i in ids}
                self._sweep(keep, first=False, retime=ids)
            tries.append({"attempt": len(tries) + 1, "retimed": ids,
                          "before": {vid: vs["line"] for vid, vs in open_.items()}}
                         | ({"paired": paired} if isinstance(paired, dict) else {}))
            self._answer()
            after = {w["variant_id"]: w.get("vs_fp32") for k in ("winner", "int8_winner") if (w := self.record.answer.get(k))}
            tries[-1]["after"] = {vid: vs["line"] for vid, vs in after.items() if vs}
            self.record.save(self.opts.run_dir)
            if not self.opts.quiet:
                for vid, line in tries[-1]["after"].items():
                    self.opts.say(f"  {vid} against fp32: {line}")
        self.record.save(self.opts.run_dir)

    def _paired(self, open_: dict[str, dict], rows: dict[str, dict]) -> dict[str, dict] | str:
        """Each open verdict against fp32 decided by paired re-timing of the two rows' artifacts in this run
        (:class:`optbench.run.retime.Retimer`, as ``check --baseline``): their ``vs_fp32`` entries; or why a side
        cannot be re-timed so."""
        from optbench.run.retime import Retimer
        from optbench.spec.defaults import config_defaults

        d = self.opts.run_dir
        retimer = Retimer(d, d, config_defaults("budgets")["latency"]["min_effect"], always=True,
                          say=self.opts.say if not self.opts.quiet else (lambda s: None))
        out = {}
        for vid, vs in open_.items():
            v = retimer.paired(rows[vid], rows[vs["variant_id"]])
            if isinstance(v, str):
                return v
            out[vid] = {**vs, "word": v.word, "ratio": v.ratio, "line": v.line, "settles": v.settles,
                        "interval": list(v.interval) if v.interval else None, "pairs": [p.to_dict() for p in v.pairs],
                        "rows": _timed(rows[vid], rows[vs["variant_id"]])}
        return out

    def _paired_verdicts(self, answer: dict) -> None:
        """The answer's verdicts against fp32 as the latest paired confirmation decided them, where its rows are the
        ones that were re-timed (the answer is judged again from the rows on every resume)."""
        from optbench.store import final_rows

        latest = next((t["paired"] for t in reversed(self.record.confirmations) if t.get("paired")), {})
        rows = final_rows(self.opts.run_dir) if latest else {}
        for key in ("winner", "int8_winner"):
            w = answer.get(key)
            vs = (w or {}).get("vs_fp32")
            got = latest.get((w or {}).get("variant_id"))
            if vs and got and got["variant_id"] == vs["variant_id"] and \
                    got.get("rows") == _timed(rows[w["variant_id"]], rows[vs["variant_id"]]):
                w["vs_fp32"] = got

    def _say_step(self, step: dict) -> None:
        if self.opts.quiet:
            return
        for c in step["candidates"]:
            o = c["outcome"]
            word = "passes" if o["passed"] else ("fails" if o["ran"] else "did not run")
            p50 = f"p50 {o['p50']:.3g} ms" if o["p50"] else "no p50"
            bound = f"{c['binding']} {c['value']:.4g}, " if c.get("value") is not None else ""
            self.opts.say(f"step {step['step']} {step['phase']}{' (replayed)' if step['replayed'] else ''}: "
                          f"{c['label']}: {word}, {p50}, {bound}worst margin {o['score']:.3g}")


def _timed(candidate: dict, fp32: dict) -> str:
    """What identifies the two rows a paired confirmation re-timed (their timing and what it saw): a row timed again
    since, or marked busy, is not the one it decided on."""
    import hashlib

    keys = ("timing_window", "busy", "latency_ms_rounds")
    text = json.dumps([{k: r.get(k) for k in keys} for r in (candidate, fp32)], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _searched(settings: dict) -> dict:
    """The search settings a resumed search must share (how often its answer is timed again may change)."""
    return {k: v for k, v in settings.items() if k != "confirm"}


def _label(c: Candidate) -> str:
    fb = c.by_precision()
    tail = "".join(f", {len(gs)} group{'s' if len(gs) > 1 else ''} in {p}" for p, gs in fb.items())
    return f"{c.kind}{' ' + c.calib.label() if c.calib else ''}{tail}"


def tune(spec: Spec, opts: TuneOptions) -> Record:
    return Tuner(spec, opts).run()
