"""The deploy answer from the candidates' rows, and nothing else (pure: the same rows give the same answer).

A candidate is eligible when it was measured, some QPS met the p99 bound (peak > 0), and it fits the memory
bound. Each device then runs at most ``1 - headroom`` of its peak; the devices a target QPS needs follow. The
objective orders the eligible candidates within ``max_devices``:

- ``gpus``: fewest devices, then the highest peak QPS per device, the least memory;
- ``energy``: the lowest J per item (candidates without an energy reading are left out), then fewest devices;
- ``p99``: the lowest p99 at the load each device would carry (the p99 of the passing peak-search run at the
  lowest QPS at or above that load), then fewest devices.

The runner-up is the best candidate that differs from the winner in more than its queue delay (another variant,
lane count, max batch or size rule), with the first term of the ordering it lost on. The frontiers: candidates no
other beats on both peak QPS per device and p99 at the peak, and on both peak QPS and J per item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from optbench.deploy.row import CandidateRow

OBJECTIVES = ("gpus", "energy", "p99")


@dataclass(frozen=True)
class Sizing:
    devices: int
    load_qps: float          # what each device carries: target / devices
    load_share: float        # load / peak
    p99_at_load_ms: float | None


def p99_at(row: CandidateRow, load: float) -> float | None:
    """The p99 of the passing, deciding peak-search run at the lowest target QPS at or above ``load``."""
    runs = [p for p in row.probes if p.get("met") and not p.get("superseded") and p.get("role") != "warm-up"
            and (p.get("target_qps") or 0) >= load and p.get("p99_ms") is not None]
    return min(runs, key=lambda p: p["target_qps"])["p99_ms"] if runs else row.peak_p99_ms


def sizing(row: CandidateRow, qps: float, headroom: float) -> Sizing:
    per = (row.peak_qps or 0.0) * (1.0 - headroom)
    devices = max(1, math.ceil(qps / per - 1e-9)) if per > 0 else 0
    load = qps / devices if devices else 0.0
    return Sizing(devices, load, load / row.peak_qps if row.peak_qps else 0.0, p99_at(row, load) if devices else None)


def ineligible(row: CandidateRow, memory_limit: int | None) -> str | None:
    """Why a candidate cannot be the answer (None: it can)."""
    if row.status != "measured":
        return f"{row.status}: {row.reason}" if row.reason else row.status
    if not row.peak_qps:
        return f"no QPS met the p99 bound{': ' + row.peak_note if row.peak_note else ''}"
    if memory_limit is not None and row.memory_bytes is not None and row.memory_bytes > memory_limit:
        return f"uses {row.memory_bytes / 2**30:.3g} GiB, over the memory bound"
    return None


def _key(row: CandidateRow, s: Sizing, objective: str) -> tuple:
    peak, mem = -(row.peak_qps or 0.0), row.memory_bytes if row.memory_bytes is not None else math.inf
    if objective == "energy":
        return (row.j_per_item if row.j_per_item is not None else math.inf, s.devices, peak, mem)
    if objective == "p99":
        return (s.p99_at_load_ms if s.p99_at_load_ms is not None else math.inf, s.devices, peak, mem)
    return (s.devices, peak, mem)


TERMS = {"gpus": ("devices", "peak QPS per device", "memory"),
         "energy": ("J per item", "devices", "peak QPS per device", "memory"),
         "p99": ("p99 at its load", "devices", "peak QPS per device", "memory")}


def why_lost(loser: tuple, winner: tuple, objective: str) -> str:
    """The first term of the ordering on which ``loser`` is behind, in words."""
    for name, a, b in zip(TERMS[objective], loser, winner):
        if a == b:
            continue
        if name == "peak QPS per device":
            a, b = -a, -b
            return f"serves {a:,.0f} QPS per device at the bound, {1 - a / b:.0%} less than {b:,.0f}"
        if name == "devices":
            return f"needs {a} devices, not {b}"
        if name == "memory":
            return f"uses more memory ({a / 2**20:,.0f} MiB, not {b / 2**20:,.0f})"
        if name == "J per item":
            return f"uses {a:.4g} J per item, not {b:.4g}" if math.isfinite(a) else "has no energy reading"
        return f"its p99 at its load is {a:.4g} ms, not {b:.4g}"
    return "ties with the winner on every term; the search met it later"


def pareto(points: list[tuple[CandidateRow, float]]) -> list[CandidateRow]:
    """Candidates no other beats on both peak QPS (higher) and the second figure (lower): highest QPS first."""
    out, best = [], math.inf
    for row, y in sorted(points, key=lambda p: (-(p[0].peak_qps or 0.0), p[1])):
        if y < best:
            out.append(row)
            best = y
    return out


def described(row: CandidateRow, s: Sizing | None = None) -> dict[str, Any]:
    d = {"key": row.config.key, "label": row.config.label(), "variant_id": row.variant_id, "backend": row.backend,
         "precision": row.precision, "instances": row.instances, "max_batch": row.max_batch,
         "max_delay_ms": row.max_delay_ms, "sizes": row.sizes, "cuda_graphs": bool(row.cuda_graphs),
         "peak_qps": row.peak_qps,
         "peak_p99_ms": row.peak_p99_ms, "peak_validity": row.peak_validity, "j_per_item": row.j_per_item,
         "memory_bytes": row.memory_bytes}
    if s is not None:
        d.update(devices=s.devices, load_qps=round(s.load_qps, 3), load_share=round(s.load_share, 4),
                 p99_at_load_ms=s.p99_at_load_ms)
    return d


def choose(rows: list[CandidateRow], qps: float, headroom: float = 0.2, max_devices: int | None = None,
           objective: str = "gpus", memory_limit: int | None = None) -> dict[str, Any]:
    """The answer: ``winner`` (None where no candidate meets the bound within ``max_devices``), ``runner_up`` with
    ``why``, ``closest`` (fewest devices, where none fits ``max_devices``), the frontiers and every candidate's
    verdict."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective {objective!r}: one of {OBJECTIVES}")
    verdicts, ranked = {}, []
    for r in rows:
        why = ineligible(r, memory_limit)
        if why is None and objective == "energy" and r.j_per_item is None:
            why = f"no energy reading ({r.energy_source or 'no counter'})"
        if why is not None:
            verdicts[r.config.key] = why
            continue
        s = sizing(r, qps, headroom)
        if max_devices is not None and s.devices > max_devices:
            verdicts[r.config.key] = f"needs {s.devices} devices, more than {max_devices}"
            continue
        verdicts[r.config.key] = "eligible"
        ranked.append((_key(r, s, objective), r, s))
    ranked.sort(key=lambda t: t[0])
    out: dict[str, Any] = {"objective": objective, "target_qps": qps, "headroom": headroom,
                           "max_devices": max_devices, "memory_limit_bytes": memory_limit, "candidates": len(rows),
                           "eligible": len(ranked), "verdicts": verdicts, "winner": None, "runner_up": None}
    if ranked:
        key, win, s = ranked[0]
        out["winner"] = described(win, s)
        other = next((t for t in ranked[1:] if t[1].config.shape != win.config.shape), None)
        if other is not None:
            out["runner_up"] = {**described(other[1], other[2]), "why": why_lost(other[0], key, objective)}
    else:
        fits = [(sizing(r, qps, headroom), r) for r in rows if ineligible(r, memory_limit) is None]
        if fits:
            s, r = min(fits, key=lambda t: (t[0].devices, -(t[1].peak_qps or 0)))
            out["closest"] = described(r, s)
    good = [r for r in rows if ineligible(r, memory_limit) is None]
    out["frontier_p99"] = [r.config.key for r in pareto([(r, r.peak_p99_ms or math.inf) for r in good])]
    out["frontier_energy"] = [r.config.key for r in pareto([(r, r.j_per_item) for r in good
                                                            if r.j_per_item is not None])]
    return out
