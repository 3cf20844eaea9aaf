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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from optbench.measure.serving.loadgen import ScenarioResult

METHOD = "bisection over LoadGen server runs (PerformanceOnly), judged by LoadGen's p99 constraint"


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


def meets_bound(r: ScenarioResult) -> bool:
    """LoadGen's verdict on the latency bound, and the run was not ended early for too many outstanding queries."""
    ended_early = any("outstanding" in e.lower() for e in r.loadgen_errors)
    return bool(r.bound_met) and not ended_early


def _probe(r: ScenarioResult) -> dict:
    return {"target_qps": r.target_qps, "achieved_qps": r.achieved_qps, "p99_ms": r.p99_ms, "met": meets_bound(r),
            "validity": r.validity}


def find_peak(run_at: Callable[[float], ScenarioResult], known: Sequence[ScenarioResult], p99_bound_ms: float,
              start_qps: float, batching: str = "none", tolerance: float = 0.1, max_probes: int = 12,
              min_qps: float = 0.5) -> PeakResult:
    """Bracket the peak with ``known`` server runs (or from ``start_qps``), widen by doubling or halving, then
    bisect geometrically until the bracket is within ``tolerance`` (relative) or ``max_probes`` runs are spent."""
    runs = {r.target_qps: r for r in known if r.target_qps}
    probes: list[dict] = []

    def probe(qps: float) -> ScenarioResult:
        r = runs[qps] = run_at(qps)
        probes.append(_probe(r))
        return r

    def passing() -> list[float]:
        return sorted(q for q, r in runs.items() if meets_bound(r))

    def lo_hi() -> tuple[float | None, float | None]:
        ok = passing()
        lo = ok[-1] if ok else None
        above = sorted(q for q, r in runs.items() if not meets_bound(r) and (lo is None or q > lo))
        return lo, (above[0] if above else None)

    lo, hi = lo_hi()
    if lo is None and hi is None:
        probe(start_qps)
        lo, hi = lo_hi()
    while lo is None and len(probes) < max_probes and hi / 2 >= min_qps:
        probe(hi / 2)
        lo, hi = lo_hi()
    while hi is None and len(probes) < max_probes:
        probe(lo * 2)
        lo, hi = lo_hi()
    while lo is not None and hi is not None and hi / lo > 1 + tolerance and len(probes) < max_probes:
        probe(round(math.sqrt(lo * hi), 3))
        lo, hi = lo_hi()
    best = runs.get(lo) if lo is not None else None
    note = None
    if lo is None:
        note = f"no QPS down to {min_qps:g} met the p99 bound of {p99_bound_ms:g} ms"
    elif hi is None or hi / lo > 1 + tolerance:
        note = f"stopped after {len(probes)} probes with the peak between {lo:g} and {hi if hi else 'unbounded'} QPS"
    return PeakResult(batching=batching, p99_bound_ms=p99_bound_ms, qps=lo, achieved_qps=best.achieved_qps if best else None,
                      p99_ms=best.p99_ms if best else None, validity=best.validity if best else None,
                      tolerance=tolerance, method=METHOD, probes=probes, note=note)
