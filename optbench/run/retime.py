"""Re-timing two runs' artifacts alternately, in fresh worker processes, for a paired latency verdict.

Where a latency verdict between two runs is inconclusive (or always, when asked), the baseline's artifact and the
candidate's are timed again: 2 x ``pairs`` worker processes in ABBA order (:func:`optbench.measure.paired.schedule`),
each forked as a run's variant process is (:func:`optbench.run.supervise.spawn`) and timing as a run's further timing
processes do (:func:`optbench.run.variant.measure_variant` with ``timing_only``), but on the file the row recorded
(``artifact``) instead of a rebuild: the same warm-up, rounds and settings for both sides (the candidate's
``measure``), one process's share of the rounds each, the node's timing lock held as in a run. The pairs' ratios
decide (:func:`optbench.measure.paired.decide_paired`).

A side is re-timed only as it was timed: the run's preparation (``work/``) and spec are still there, its artifact
is still the file it timed (an artifact of the cache matches this user's ledger; an ONNX model file as given still
has the digest the run read), the backend's runtime is the version the run used, on the CPU the run ran on.
Rows whose backend runs the torch module (torch eager, torch.compile) record no file: their module is built again
in each process from the copy of the entrypoint file and the build arguments the run kept (:mod:`optbench.run.kept`),
and refused unless its weights are the run's. Otherwise the verdict stays the runs' own and says why.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import optbench.clock as clock
from optbench.measure.paired import MOST_PAIRS, Pair, level, schedule, settle
from optbench.measure.verdict import LatencyVerdict
from optbench.spec.models import Spec

if TYPE_CHECKING:
    from optbench.history.store import History


@dataclass(frozen=True)
class Side:
    """What re-times one side: the run, its spec and planned variant, the artifact file, the cache it lies in."""

    run_dir: Path
    spec: dict
    variant: dict
    artifact: Path
    cache_dir: Path
    spec_dir: str
    rebuilt: bool = False  # a torch row: ``artifact`` is the kept entrypoint copy its module is built again from


def locate(run_dir: Path, row: dict) -> Side | str:
    """The side that re-times ``row`` of the run in ``run_dir``, or why it cannot be re-timed."""
    run_dir = Path(run_dir)
    if row.get("status") != "ok":
        return "the row was not measured"
    missing = [f for f in ("spec.yaml", "env.json", "work/prepare.json", "work/data.npz") if not (run_dir / f).exists()]
    if missing:
        return f"the run directory no longer holds {', '.join(missing)}"
    import yaml

    from optbench.backends import get_backend
    from optbench.specfile.load import validate

    spec = yaml.safe_load((run_dir / "spec.yaml").read_text())
    valid = validate(spec, {}, str(run_dir / "spec.yaml"))
    prepared = json.loads((run_dir / "work" / "prepare.json").read_text())
    variant = _planned(valid, row["variant_id"])
    if isinstance(variant, str):
        return variant
    rebuilt = get_backend(variant["backend_name"]).consumes == "torch"
    path = _kept(valid, prepared, variant) if rebuilt else _recorded(row)
    if isinstance(path, str):
        return path
    cache_dir, why = _trusted(path, valid, prepared)
    if why:
        return why
    if why := _elsewhere(json.loads((run_dir / "env.json").read_text()), variant["backend_name"]):
        return why
    return Side(run_dir, spec, variant, path, cache_dir, str(prepared.get("spec_dir") or run_dir), rebuilt)


def _recorded(row: dict) -> Path | str:
    """The file a row's backend consumed (an ONNX file, a model file as given), or why there is none. A row whose
    backend ran a file it made of its own (OpenVINO's int8 IR) is re-timed from the file that one was made from
    (``settings.built_from``): the backend makes it again, from its cache, as the run did."""
    artifact = (row.get("settings") or {}).get("built_from") or row.get("artifact")
    if not isinstance(artifact, str) or not artifact:
        return "its row records no artifact file (the run was made before rows recorded one)"
    path = Path(artifact)
    if not path.exists():
        return f"its artifact {path} is gone (deleted, or the artifact cache was cleared)"
    return path


def _kept(spec: Spec, prepared: dict, variant: dict) -> Path | str:
    """The kept entrypoint copy a torch row's module is rebuilt from (:mod:`optbench.run.kept`), or why not."""
    from optbench.run.kept import why_not_rebuilt

    if variant.get("transform", "none") != "none":
        return f"its variant transforms the module ({variant['transform']}), which a re-timing would redo in every " \
               f"process"
    copy, why = why_not_rebuilt(prepared, spec.model.source)
    return why or copy


def _planned(spec: Spec, vid: str) -> dict | str:
    """The variant as the run planned it (its backend options are not in the row), planned again here."""
    from optbench.plan import plan

    for v in plan(spec):
        if v.id == vid:
            return v.to_dict() if v.status == "planned" else f"its backend cannot run here now ({v.reason})"
    return f"the run's spec no longer plans {vid}"


def _trusted(path: Path, spec: Spec, prepared: dict) -> tuple[Path, str | None]:
    """The cache the artifact lies in, and why it is not the file the run timed (None: it is)."""
    from optbench.cache import ArtifactCache, CacheIntegrityError, default_cache_dir

    if str(path) == prepared.get("model_path") and spec.model.source == "onnx":
        from optbench.models.sources import file_identity

        same = file_identity(spec.model, path) == prepared.get("identity")
        return default_cache_dir(), None if same else f"the model file {path} changed since the run read it"
    if (prepared.get("native") or {}).get("path") == str(path):
        return path.parent, f"its artifact is the model file as given ({path}), which cannot be checked against " \
                            f"what the run timed"
    try:
        ArtifactCache(path.parent.parent).verify(path)
    except CacheIntegrityError as e:
        return path.parent.parent, str(e)
    return path.parent.parent, None


def _elsewhere(env: dict, backend_name: str) -> str | None:
    """Why this machine cannot time what the run timed: another CPU, or the backend's runtime at another version."""
    from optbench.backends import get_backend
    from optbench.env import cpu_model

    if env.get("cpu") and env["cpu"] != cpu_model():
        return f"the run was timed on another CPU ({env['cpu']}; this machine: {cpu_model()})"
    missing, versions = get_backend(backend_name).installed()
    if missing:
        return f"its backend's runtime is no longer installed ({missing})"
    used = {**(env.get("libraries") or {}), **(env.get("runtimes") or {})}
    changed = [f"{pkg} {v} is installed, the run used {used[pkg]}" for pkg, v in versions.items()
               if pkg in used and used[pkg] != v]
    return "; ".join(changed) or None


def _job(side: Side, measure: dict, rounds: int) -> dict:
    """A run's further timing process, on the recorded artifact (see :func:`optbench.run.worker.run_variant`)."""
    from optbench.run.supervise import backend_preload

    return {"mode": "variant", "spec": {**side.spec, "measure": measure}, "spec_dir": side.spec_dir,
            "preload": backend_preload({side.variant["backend_name"]}),
            "run_dir": str(side.run_dir.resolve()), "cache_dir": str(side.cache_dir), "no_cache": False,
            "variant": side.variant, "rounds": rounds, "timing_only": True,
            "recorded": None if side.rebuilt else str(side.artifact), "rebuilt": side.rebuilt}


def retime(candidate: Side, baseline: Side, pairs: int, rng: np.random.Generator,
           say: Callable[[str], None] = lambda s: None, start: int = 0) -> list[Pair] | str:
    """``pairs`` pairs of fresh worker processes, one of each side started together and taking turns round by
    round in ABBA order (:mod:`optbench.measure.turns`), both sides at the candidate's ``measure`` settings (timed,
    whatever its mode), inside one timing window of the node held here; or why a process failed. One-thread CPU
    variants' pairs run side by side, one pair on each core this process may use (both processes of a pair on its
    core, taking turns, so each core runs one timing process at a time); other variants' pairs one after another.
    ``start``: the number of pairs an earlier look of the same re-timing ran (names their folders)."""
    from optbench.measure.timing import round_shares
    from optbench.run.node_locks import Exclusive
    from optbench.spec.models import MeasureSettings

    measure = {**(candidate.spec.get("measure") or {}), "mode": "full"}
    settings = MeasureSettings.model_validate(measure)
    rounds = round_shares(settings.rounds, settings.processes)[0]
    sides = {"candidate": candidate, "baseline": baseline}
    cores = sorted(os.sched_getaffinity(0)) if _one_thread(candidate) and _one_thread(baseline) else None
    width = len(cores) if cores else 1
    say(f"re-timing {candidate.variant['id']}: {pairs} pairs of worker processes, the baseline's and the "
        f"candidate's artifact, {rounds} rounds each, taking turns" +
        (f", {width} pairs at a time (one a core)" if width > 1 else ""))
    orders = [schedule(rounds, rng) for _ in range(pairs)]  # drawn in pair order, whatever runs side by side
    out: list[Pair] = []
    excl = Exclusive(label=f"optbench re-timing {candidate.variant['id']}")
    try:
        with tempfile.TemporaryDirectory(prefix="optbench-retime-") as tmp, excl.timing(candidate.variant["device"]), \
                ThreadPoolExecutor(max_workers=width, thread_name_prefix="optbench-retime-pair") as pool:

            def one(k: int) -> Pair | str:
                core = cores[k % len(cores)] if cores else None
                return _pair(sides, measure, rounds, orders[k], settings, Path(tmp) / f"pair-{start + k}", core)

            for first in range(0, pairs, width):  # a wave: one pair a core, all finished before the next starts
                got = list(pool.map(one, range(first, min(pairs, first + width))))
                if (failed := next((o for o in got if isinstance(o, str)), None)) is not None:
                    return failed
                out += got
    finally:
        excl.close()
    return out


def _one_thread(side: Side) -> bool:
    """Whether the side is a CPU variant that computes on one thread (its backend's ``threads: 1``): only then are
    a pair's two processes moved onto one core, which changes nothing of what they time."""
    return not side.variant["device"].startswith("cuda") and (side.variant.get("options") or {}).get("threads") == 1


def _pair(sides: dict[str, Side], measure: dict, rounds: int, order: list[str], settings: Any,
          folder: Path, core: int | None = None) -> Pair | str:
    """One pair: both sides' processes at once, their rounds in ``order``, both timing on ``core`` (one-thread CPU
    variants' pairs take the cores in turn); the pair, or why a process failed (the other is then told to stop)."""
    import threading

    from optbench.measure.turns import abort, make_folder
    from optbench.run.supervise import row_from_worker, spawn

    make_folder(folder)
    rows: dict[str, dict] = {}

    def one(name: str) -> None:
        log = folder / f"{name}.log"
        job = {**_job(sides[name], measure, rounds), "locks": "held by the parent",
               "turns": {"folder": str(folder), "me": name, "order": order, "core": core}}
        try:
            result, proc = spawn(job, settings.timeout_s, settings.memory_limit_mb, log, settings.rss_limit_mb)
            row = row_from_worker(result, proc, settings.timeout_s, log)
        except Exception as e:  # noqa: BLE001  (the pair's failure, said by the caller)
            row = {"status": "failed", "error": f"{type(e).__name__}: {e}"}
        rows[name] = row
        if row.get("status") != "ok":
            abort(folder, f"the {name}'s process {row.get('status')}: {str(row.get('error') or '')[:200]}")

    threads = [threading.Thread(target=one, args=(name,), name=f"optbench-retime-{name}") for name in sides]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("candidate", "baseline"):
        row = rows[name]
        if row.get("status") != "ok" or not row.get("latency_ms_rounds"):
            return f"the {name}'s re-timing process {row.get('status')}: {str(row.get('error') or '')[:300]}"
    busy = rows["baseline"].get("busy") or rows["candidate"].get("busy")
    return Pair(level(rows["baseline"]["latency_ms_rounds"]), level(rows["candidate"]["latency_ms_rounds"]),
                order[0], busy)


@dataclass
class Retimer:
    """Settles latency verdicts between two rows (of two runs, or two variants of one run) by paired re-timing:
    where one is inconclusive, or every one (``always``). The one implementation ``check --baseline``, ``compare``,
    ``check --history`` and ``tune``'s confirmation share."""

    candidate_dir: Path
    baseline_dir: Path
    effect: float
    always: bool = False
    pairs: int = MOST_PAIRS  # the most pairs a re-timing runs (see :func:`batches`)
    seed: int | None = None
    say: Callable[[str], None] = lambda s: None

    def __call__(self, row: dict, base: dict, verdict: LatencyVerdict) -> LatencyVerdict:
        if not (self.always or verdict.word == "inconclusive"):
            return verdict
        got = self.paired(row, base)
        if isinstance(got, str):
            return replace(verdict, reason=f"{verdict.reason}; not re-timed: {got}")
        return got

    def paired(self, row: dict, base: dict) -> LatencyVerdict | str:
        """The paired verdict on re-timing both rows' artifacts, or why they cannot be re-timed."""
        if Path(self.candidate_dir).resolve() == Path(self.baseline_dir).resolve() and \
                row.get("variant_id") == base.get("variant_id"):
            return "both sides are the same run"
        sides = []
        for name, run_dir, r in (("candidate", self.candidate_dir, row), ("baseline", self.baseline_dir, base)):
            side = locate(run_dir, r)
            if isinstance(side, str):
                return f"{name}: {side}"
            sides.append(side)
        candidate, baseline = sides
        t0 = clock.monotonic()
        rng = np.random.default_rng(self.seed)
        v = settle(lambda n, done: retime(candidate, baseline, n, rng, self.say, start=done), self.pairs,
                   self.effect, self.say)
        if isinstance(v, str):
            return v
        note = f"; re-timed in {clock.since(t0):.0f} s"
        if (baseline.spec.get("measure") or {}) != (candidate.spec.get("measure") or {}):
            note += ", both sides at the candidate's measure settings"
        return replace(v, reason=v.reason + note)


def history_baseline(history: History, run_dir: Path, row: dict) -> tuple[Path, dict] | str:
    """The most recent run before this one in the history that is comparable (the same spec, machine and library
    versions, as the history gate reads them) and whose side of ``row``'s variant can still be re-timed: its
    directory and row; or why there is none."""
    import yaml

    from optbench.history.store import machine_of, read_uid, versions_of

    run_dir = Path(run_dir)
    env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
    spec = yaml.safe_load((run_dir / "spec.yaml").read_text()) if (run_dir / "spec.yaml").exists() else {}
    uid, vid = read_uid(run_dir), row["variant_id"]
    past = history.points(str(spec.get("name")), vid, before=uid) if uid else history.points(str(spec.get("name")), vid)
    same = [p for p in past.get(vid, []) if p.machine == machine_of(env) and p.versions == versions_of(env)
            and p.uid != uid]
    why = "the history holds no comparable run before this one"
    for p in reversed(same):
        where = (history.run_of(p.uid) or {}).get("run_dir")
        if where and Path(where).resolve() == run_dir.resolve():
            continue  # the run itself, imported without its uid
        side = locate(Path(where), p.row) if where else "the history records no run directory for it"
        if not isinstance(side, str):
            return Path(where), p.row
        if why.startswith("the history holds"):
            why = f"the latest comparable run ({where or p.uid}): {side}"
    return why


def against_history(history: History, run_dir: Path, row: dict, verdict: LatencyVerdict, effect: float, pairs: int = MOST_PAIRS,
                    say: Callable[[str], None] = lambda s: None) -> LatencyVerdict:
    """The history gate's verdict settled by paired re-timing against the latest comparable run that can still be
    re-timed (see :func:`history_baseline`); the verdict as it was, saying why, where none can."""
    found = history_baseline(history, run_dir, row)
    if isinstance(found, str):
        return replace(verdict, reason=f"{verdict.reason}; not re-timed: {found}")
    base_dir, base_row = found
    got = Retimer(run_dir, base_dir, effect, always=True, pairs=pairs, say=say)(row, base_row, verdict)
    return replace(got, reason=f"{got.reason}; against the latest comparable run, {base_dir}") \
        if got.interval is not None or got.pairs else got
