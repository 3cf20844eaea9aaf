"""Trends read from the history: a metric per variant over runs, cut into comparable series (one machine, one
set of library versions), with their change points; the gate of a run against the last N comparable runs; and
what the terminal, CSV, JSON and HTML show of them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from optbench.history.changes import Step, change_points, split_comparable
from optbench.history.metrics import METRICS, column_of, value_of  # noqa: F401 (here too)


@dataclass
class Series:
    variant: str
    metric: str
    machine: str
    versions: str
    points: list[dict] = field(default_factory=list)  # {run, uid, started_at, commit, value}
    steps: list[Step] = field(default_factory=list)

    def to_json(self) -> dict:
        return {**{k: v for k, v in asdict(self).items() if k != "steps"},
                "steps": [{"run": self.points[s.index]["run"], "uid": self.points[s.index]["uid"], "before": s.before,
                           "after": s.after, "ratio": s.ratio} for s in self.steps]}


def series(history, spec_name: str, variant: str, metric: str, min_effect: float = 0.05) -> list[Series]:
    """Every comparable series of ``metric`` for the spec's variants matching ``variant``, with change points."""
    column = column_of(metric)
    out = []
    for vid, points in sorted(history.points(spec_name, variant).items()):
        for (machine, versions), group in split_comparable(points):
            pts = [{"run": p.run, "uid": p.uid, "started_at": p.started_at, "commit": p.commit,
                    "value": value_of(p.row, column)} for p in group]
            pts = [p for p in pts if p["value"] is not None]
            if not pts:
                continue
            s = Series(vid, metric, machine, versions, pts)
            s.steps = change_points([p["value"] for p in pts], min_effect)
            out.append(s)
    return out


# ---------------------------------------------------------------- the gate against history
def gate(history, run_dir, n: int, effect: float) -> list[tuple[str, str, str]]:
    """(variant, verdict word, message) of each ok row of the run against the level of the last ``n``
    comparable runs before it (same spec, machine and library versions): the latency gate's decision with the
    history's run levels as the baseline's rounds (their spread is the noise)."""
    import json
    from pathlib import Path

    import yaml

    from optbench.history.store import machine_of, read_uid, versions_of
    from optbench.measure.verdict import processes_of, rounds_of
    from optbench.store import final_rows

    run_dir = Path(run_dir)
    uid = read_uid(run_dir)
    env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
    spec = yaml.safe_load((run_dir / "spec.yaml").read_text()) if (run_dir / "spec.yaml").exists() else {}
    machine, versions = machine_of(env), versions_of(env)
    past = history.points(str(spec.get("name")), "*", before=uid) if uid else \
        history.points(str(spec.get("name")), "*")
    out = []
    for vid, row in sorted(final_rows(run_dir).items()):
        if row.get("status") != "ok":
            continue
        same = [p for p in past.get(vid, []) if p.machine == machine and p.versions == versions and p.uid != uid]
        levels = [v for v in (value_of(p.row, "latency") for p in same[-n:]) if v is not None]
        if len(levels) < 3:
            other = len(past.get(vid, [])) - len(same)
            out.append((vid, "inconclusive", f"{len(levels)} comparable run(s) before this one (at least 3 needed"
                        + (f"; {other} ran on another machine or with other library versions" if other else "")
                        + ")"))
            continue
        out.append((vid, *history_verdict(rounds_of(row), levels, effect, processes_of(row))))
    return out


def history_verdict(candidate, levels: list[float], effect: float, processes: int = 1) -> tuple[str, str]:
    """The run against its history: the history's level is the median of the past runs' levels, its noise the
    largest deviation of a past run from that median, the most deviant one set aside from five runs on (each run
    is its own worker processes, so this is the between-run spread one run cannot see). Same within ``effect``; slower or faster beyond both the
    effect and that spread; otherwise inconclusive, with the numbers. A run timed in fewer worker processes
    than the latency gate needs is held to the gate's rule: only a difference beyond PROCESS_SHIFT is called
    (a single process's layout moved whole runs by up to 1.6x here); the history's change points, over the
    runs that follow, settle the rest."""
    from optbench.measure.verdict import GATE_PROCESSES, PROCESS_SHIFT, quiet

    if candidate.busy:
        return "inconclusive", f"machine busy while this run was timed ({candidate.busy})"
    if not candidate.medians:
        return "inconclusive", "this run has no latency rounds"
    level = float(np.median(levels))
    c = float(np.median(quiet(candidate.medians)))
    d = c / level - 1
    deviations = sorted(abs(v / level - 1) for v in levels)
    # with five runs or more, the single most deviant past run is set aside (one outlier run, a neighbour's
    # burst, must not widen the range for every later run)
    spread = deviations[-2] if len(deviations) >= 5 else deviations[-1]
    numbers = (f"{c:.4g} ms vs the history's {level:.4g} ms: {d:+.1%}; past runs within {spread:.1%} of it"
               f"{' but one' if len(deviations) >= 5 else ''}; "
               f"effect {effect:.0%}; {len(levels)} runs")
    if abs(d) <= effect:
        return "same", numbers
    if abs(d) <= spread:
        return "inconclusive", f"within the history's run-to-run range ({numbers})"
    if processes < GATE_PROCESSES and abs(d) <= PROCESS_SHIFT:
        return "inconclusive", (f"this run was timed in {processes} worker process(es), fewer than the "
                                f"{GATE_PROCESSES} the gate needs: a shift up to {PROCESS_SHIFT:.0%} can be one "
                                f"process's layout ({numbers}); set measure.processes: {GATE_PROCESSES}, or read "
                                f"`optbench history` change points over the next runs")
    return ("slower" if d > 0 else "faster"), numbers


# ---------------------------------------------------------------- rendering
def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"


def table(found: list[Series], metric: str) -> str:
    import io

    from rich.console import Console
    from rich.table import Table

    from optbench.history.metrics import shown

    t = Table()
    for h in ("variant", "machine", "runs", "first", "last", "change points"):
        t.add_column(h, overflow="fold", justify="right" if h in ("runs", "first", "last") else "left")
    for s in found:
        steps = "; ".join(f"run {s.points[x.index]['run']}: {_fmt(x.before)} -> {_fmt(x.after)} "
                          f"({x.ratio - 1:+.1%})" for x in s.steps) or "none"
        t.add_row(s.variant, s.machine[:48], str(len(s.points)), _fmt(s.points[0]["value"]),
                  _fmt(s.points[-1]["value"]), steps)
    console = Console(record=True, width=170, force_terminal=False, color_system=None, file=io.StringIO())
    console.print(t)
    return f"history of {shown(metric)}; a series per variant, machine and library versions\n" + console.export_text()


def csv_text(found: list[Series]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["variant", "metric", "machine", "versions", "run", "uid", "started_at", "commit", "value", "step"])
    for s in found:
        starts = {x.index for x in s.steps}
        for i, p in enumerate(s.points):
            w.writerow([s.variant, s.metric, s.machine, s.versions, p["run"], p["uid"], p["started_at"],
                        p["commit"] or "", p["value"], i in starts])
    return buf.getvalue()


def sparkline(values: list[float]) -> str:
    bars = "▁▂▃▄▅▆▇█"
    if not values:
        return ""
    lo, hi = min(values), max(values)
    if hi - lo <= 1e-12 * max(abs(hi), 1.0):
        return bars[3] * len(values)
    return "".join(bars[min(7, int((v - lo) / (hi - lo) * 7.999))] for v in values)


def trend_rows(history, spec_name: str, machine: str | None = None, last: int = 12) -> list[dict[str, Any]]:
    """For a run's report: per variant, its latency level over the last runs (on ``machine``) as a sparkline,
    and its last step."""
    out = []
    for s in series(history, spec_name, "*", "p50"):
        if machine is not None and s.machine != machine:
            continue
        pts = s.points[-last:]
        if len(pts) < 2:
            continue
        step = s.steps[-1] if s.steps else None
        out.append({"variant": s.variant, "runs": len(s.points), "spark": sparkline([p["value"] for p in pts]),
                    "last": pts[-1]["value"], "step": (f"run {s.points[step.index]['run']}: {step.ratio - 1:+.1%}"
                                                        if step else "")})
    return out
