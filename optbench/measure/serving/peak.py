"""Peak search: the highest server QPS whose 99th percentile latency meets the bound.

A bisection over LoadGen server runs (PerformanceOnly), each judged by LoadGen's own performance constraint
(p99 within ``server_target_latency_ns``). LoadGen's FindPeakPerformance mode does run from Python (checked with
mlcommons-loadgen 6.0.17), and uses the same constraint, but it is not used here because:

- it stops only when the bounds are 10^-decimals QPS apart, with ``decimals`` an integer of at least 0, so it
  needs about log2(peak) runs after widening: some 15 runs of ``min_duration`` each for a peak near 1,000 QPS,
  too many for CI; a relative tolerance (10 % by default) needs a handful;
- its intermediate runs are written to the log only as message strings, while here every probe is a result
  with its QPS, p99, validity and the batch sizes that served it;
- it must be given a lower bound that passes, or it ends in an error; here the server runs already made at the
  spec's QPS values bracket the search, and a failing start is halved until it passes.

A probe that overloads the engine is cut short by ``server_max_async_queries`` (LoadGen ends the run when too
many queries are outstanding, and says so): such a probe fails the bound whatever its few latencies say.

One bad probe must not decide the search (a first run that pays for compilation, a batch stalled by a
recompile): the search starts with a warm-up run at its start QPS, which no bracket reads; a probe that stalled
(see :meth:`~optbench.measure.serving.batcher.Batcher.stalls`) or lies off the curve — it failed while a higher
QPS passed — is run once more and the second run decides; and before the search ends its upper bound must fail
a second time: if it passes, the bracket widens upward again. Every run is kept in ``probes``, in order, with its
role ("warm-up", "search", "re-run") and whether a later run at its QPS superseded it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from optbench.measure.serving.loadgen import ScenarioResult

METHOD = ("bisection over LoadGen server runs (PerformanceOnly), judged by LoadGen's p99 constraint, after a "
          "warm-up run; stalled or off-curve probes and the final upper bound re-run once")


@dataclass
class PeakResult:
    """The highest QPS that met the bound (None: not even ``min_qps`` did) and every probe on the way."""

    batching: str
    p99_bound_ms: float
    qps: float | None
    achieved_qps: float | None
    p99_ms: float | None
    validity: str | None
    tolerance: float
    method: str
    probes: list[dict] = field(default_factory=list)
    note: str | None = None
    instances: int = 1


def meets_bound(r: ScenarioResult) -> bool:
    """LoadGen's verdict on the latency bound, and the run was not ended early for too many outstanding queries."""
    ended_early = any("outstanding" in e.lower() for e in r.loadgen_errors)
    return bool(r.bound_met) and not ended_early


def _probe(r: ScenarioResult, role: str) -> dict:
    return {"target_qps": r.target_qps, "achieved_qps": r.achieved_qps, "p99_ms": r.p99_ms, "met": meets_bound(r),
            "validity": r.validity, "role": role, "stalls": list(getattr(r, "stalls", []) or []),
            "superseded": False, "errors": getattr(r, "errors", 0),
            "j_per_item": (getattr(r, "energy", None) or {}).get("j_per_item")}


def find_peak(run_at: Callable[[float], ScenarioResult], known: Sequence[ScenarioResult], p99_bound_ms: float,
              start_qps: float, batching: str = "none", tolerance: float = 0.1, max_probes: int = 12,
              min_qps: float = 0.5, warmup: bool = True) -> PeakResult:
    """A warm-up run at ``start_qps``; then the bracket from ``known`` server runs (or from ``start_qps``), widened
    by doubling or halving, and a geometric bisection until it is within ``tolerance`` (relative) and its upper
    bound failed twice, or ``max_probes`` runs (the warm-up and re-runs counted) are spent."""
    runs = {r.target_qps: r for r in known if r.target_qps}
    probes: list[dict] = []
    latest: dict[float, int] = {}   # qps -> its deciding probe in ``probes``
    rerun: set[float] = set()

    def probe(qps: float, role: str = "search") -> None:
        r = run_at(qps)
        probes.append(_probe(r, role))
        if role == "warm-up":
            return
        if qps in latest:
            probes[latest[qps]]["superseded"] = True
        latest[qps], runs[qps] = len(probes) - 1, r
        if role == "re-run":
            rerun.add(qps)

    def passing(q: float) -> bool:
        return meets_bound(runs[q])

    def bracket() -> tuple[float | None, float | None]:
        """(highest pass below the lowest failure, lowest failure): a failure bounds the peak whatever passed above."""
        fails = sorted(q for q in runs if not passing(q))
        hi = fails[0] if fails else None
        ok = sorted(q for q in runs if passing(q) and (hi is None or q < hi))
        return (ok[-1] if ok else None), hi

    def suspect() -> float | None:
        """A run to repeat: one that stalled, or one off the curve (failed below a QPS that passed; when the failure
        was already repeated, the pass above it); each QPS is repeated once."""
        for q in sorted(runs):
            if q not in rerun and getattr(runs[q], "stalls", None):
                return q
        fails = sorted(q for q in runs if not passing(q))
        passes = sorted(q for q in runs if passing(q))
        for f in fails:
            above = [p for p in passes if p > f]
            if above:
                if f not in rerun:
                    return f
                if (p := above[-1]) not in rerun:
                    return p
        return None

    def step() -> bool:
        if (q := suspect()) is not None:
            probe(q, "re-run")
            return True
        lo, hi = bracket()
        if lo is None and hi is None:
            probe(start_qps)
        elif lo is None:
            if hi / 2 < min_qps:
                return False
            probe(round(hi / 2, 3))
        elif hi is None:
            probe(round(lo * 2, 3))
        elif hi / lo > 1 + tolerance:
            probe(round(math.sqrt(lo * hi), 3))
        elif hi not in rerun:  # the upper bound fails twice before it is believed; a pass widens the bracket upward
            probe(hi, "re-run")
        else:
            return False
        return True

    if warmup and max_probes > 1:
        probe(start_qps, "warm-up")
    while len(probes) < max_probes and step():
        pass
    lo, hi = bracket()
    best = runs.get(lo) if lo is not None else None
    note = None
    if lo is None:
        low = min(runs) if runs else start_qps
        note = f"no QPS down to {max(low, min_qps):g} met the p99 bound of {p99_bound_ms:g} ms" + \
            (f" (stopped after {len(probes)} runs)" if low / 2 >= min_qps else "")
    elif hi is None or hi / lo > 1 + tolerance or hi not in rerun:
        note = (f"stopped after {len(probes)} runs with the peak between {lo:g} and "
                f"{f'{hi:g}' if hi else 'unbounded'} QPS" + ("" if hi is None or hi in rerun else
                                                              f" ({hi:g} failed once, not re-run)"))
    return PeakResult(batching=batching, p99_bound_ms=p99_bound_ms, qps=lo,
                      achieved_qps=best.achieved_qps if best else None, p99_ms=best.p99_ms if best else None,
                      validity=best.validity if best else None, tolerance=tolerance, method=METHOD, probes=probes,
                      note=note)
