"""Candidates as spec entries: the tune run's spec (the user's spec at the search's point, every candidate an entry
of its variant lists, the search's budgets merged), a candidate's int8 or fp16 settings, the node groups as node
name patterns, and the variant ids a candidate gets on each backend."""

from __future__ import annotations

import copy
import fnmatch
from dataclasses import dataclass
from typing import Any

from optbench.errors import SpecError
from optbench.spec.models import Spec
from optbench.tune.strategy import Calib, Candidate, Space, calibrations


@dataclass(frozen=True)
class Point:
    batch: int
    dims: dict[str, int]

    def label(self) -> str:
        return f"batch {self.batch}" + "".join(f", {k}{v}" for k, v in sorted(self.dims.items()))


def point_of(spec: Spec) -> Point:
    from optbench.plan import points

    s = spec.search
    if s.batch is None and s.shape is None:
        b, dims = points(spec)[0]
        return Point(b, dict(dims))
    return Point(s.batch if s.batch is not None else spec.variants.batch_size[0],
                 dict(s.shape if s.shape is not None else points(spec)[0][1]))


def base_int8(spec: Spec) -> dict[str, Any]:
    s = spec.search
    base = s.base or next(q for q in spec.variants.int8 if q.mode == "static")
    return base.model_dump(mode="json")


def space_of(spec: Spec) -> Space:
    s, base = spec.search, base_int8(spec)
    start = Calib(base["method"], base["per_channel"], base["symmetric_activations"])
    calibs = calibrations(s.space.method, s.space.per_channel, s.space.symmetric_activations, start)
    return Space(calibs, list(s.space.fallbacks), s.trials)


def escape(name: str) -> str:
    """A node name as an fnmatch pattern that matches it alone."""
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def patterns(nodes: list[str], every: list[str]) -> list[str]:
    """Node names as few patterns as say exactly them: ``scope/*`` where every node under a scope is named,
    the names themselves elsewhere; in graph order."""
    chosen, out, covered = set(nodes), [], set()
    scopes = sorted({n.rsplit("/", i)[0] for n in nodes if n.startswith("/") for i in range(1, n.count("/"))},
                    key=lambda s: (s.count("/"), s))
    for scope in scopes:
        under = [n for n in every if n.startswith(scope + "/")]
        if under and all(n in chosen for n in under) and not any(n in covered for n in under):
            out.append(escape(scope) + "/*")
            covered.update(under)
    out += [escape(n) for n in every if n in chosen and n not in covered]
    out += [escape(n) for n in nodes if n not in every and n not in covered]
    order = {n: i for i, n in enumerate(every)}
    return sorted(dict.fromkeys(out), key=lambda p: min((order[n] for n in every if fnmatch.fnmatchcase(n, p)),
                                                        default=len(order)))


def settings_of(c: Candidate, base: dict[str, Any], groups: dict[str, list[str]], every: list[str]) -> dict | None:
    """The int8 settings (or fp16 settings) a candidate is built with; None for fp32 and the plain fp16 graph."""
    nodes = {p: [n for g in gs for n in groups[g]] for p, gs in c.by_precision().items()}
    if c.kind == "int8":
        q = {**base, "method": c.calib.method, "per_channel": c.calib.per_channel,
             "symmetric_activations": c.calib.symmetric, "exclude_nodes": None, "fp16_nodes": None}
        if nodes.get("fp32"):
            q["exclude_nodes"] = patterns(nodes["fp32"], every)
        if nodes.get("fp16"):
            q["fp16_nodes"] = patterns(nodes["fp16"], every)
        return q
    if c.kind == "fp16" and nodes.get("fp32"):
        return {"fp32_nodes": patterns(nodes["fp32"], every)}
    return None


def tune_spec(spec: Spec, point: Point, backends: list[str], entries: list[tuple[str, dict | None]],
              constraints: list[str] = ()) -> dict:
    """The tune run's spec: the user's at the search's point on the search's backends, its variant lists the
    candidates' (kind, settings) in order, the search's budgets over the spec's, the command line's constraints
    after the spec's, timed in search.processes."""
    d = copy.deepcopy(spec.model_dump(mode="json"))
    d["constraints"] = list(dict.fromkeys(list(d.get("constraints") or []) + list(constraints)))
    kinds = [k for k in ("fp32", "fp16", "int8") if any(kind == k for kind, _ in entries)]
    int8 = [s for k, s in entries if k == "int8"]
    fp16 = [s or {} for k, s in entries if k == "fp16"]
    d["variants"] = {"precision": kinds, "batch_size": [point.batch], "transforms": ["none"],
                     "int8": int8 or [base_int8(spec)], "fp16": fp16 or [{}]}
    if point.dims:
        d["variants"]["shapes"] = [dict(point.dims)]
    d["backends"] = [b for b in d["backends"] if (b.get("label") or b["name"]) in backends]
    budgets = {k: dict(v) for k, v in (d.get("budgets") or {}).items()}
    for selector, values in (spec.search.budgets or {}).items():
        budgets[selector] = {**budgets.pop(selector, {}), **values}  # after the spec's: it wins where both select
    d["budgets"] = budgets
    d["measure"] = {**d["measure"], "processes": spec.search.processes}
    return d


def search_backends(spec: Spec) -> list[str]:
    keys = [b.key for b in spec.backends]
    chosen = spec.search.space.backends or keys
    if not chosen:
        raise SpecError("search: no backend to time candidates on", field="search.space.backends")
    return [k for k in keys if k in chosen]


def entry_key(kind: str, settings: dict | None) -> tuple:
    import json

    return kind, json.dumps(settings, sort_keys=True) if settings else ""


def variant_ids(plan: list, entries: dict[tuple, Candidate]) -> dict[Candidate, dict[str, Any]]:
    """Each candidate's variants by backend (the plan's variants matched by precision and settings)."""
    out: dict[Candidate, dict[str, Any]] = {}
    for v in plan:
        settings = v.int8 if v.precision == "int8" else v.fp16 if v.precision == "fp16" else None
        c = entries.get(entry_key(v.precision, settings))
        if c is not None:
            out.setdefault(c, {})[v.backend] = v
    return out
