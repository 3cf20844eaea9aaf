"""The search's candidates judged as ``optbench check`` judges them (one decision path: every budget and task
metric of the run's spec, plus its constraints), and the answer: the fastest passing candidate with its settings
as a spec fragment, its latency verdict against fp32 on rounds of the same run, the frontier of (latency, worst
margin to a budget), and the closest candidate where none passes."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.check import Result, check_constraints, check_run
from optbench.tune.strategy import Outcome


@dataclass(frozen=True)
class Judged:
    """One row of the tune run as the search sees it."""

    row: dict
    passed: bool
    score: float             # worst margin to a budget (< 0: fails); -inf where the variant did not run
    binding: str | None      # the check with that margin, e.g. "det_f1_min" or "scores.cosine_min"
    value: float | None      # the row's value of that check's metric
    reasons: list[str]
    mean_margin: float = 0.0  # over every budget check, each clipped to [-1, 1]

    @property
    def p50(self) -> float | None:
        """The p50 the search compares: that of the row's quiet rounds (the median of the fastest third of its round
        medians, as the latency gate levels a side: interference only adds time), else the row's p50."""
        import numpy as np

        from optbench.measure.verdict import quiet, rounds_of

        meds = rounds_of(self.row).medians if self.row.get("status") == "ok" else []
        return float(np.median(quiet(meds))) if len(meds) >= 2 else self.all_p50

    @property
    def all_p50(self) -> float | None:
        v = self.row.get("latency_ms_p50")
        return float(v) if isinstance(v, (int, float)) and not math.isnan(v) else None


def judge_run(run_dir: Path, constraints: list) -> dict[str, Judged]:
    """Every final row of the run judged: check_run's verdicts (status, every output's budgets, collapse), the
    constraints, and the worst margin among the budget checks."""
    from optbench.store import final_rows

    rows = final_rows(Path(run_dir))
    results: dict[str, list[Result]] = {}
    for r in check_run(Path(run_dir)).results:
        results.setdefault(r.variant, []).append(r)
    out = {}
    for vid, row in rows.items():
        res = list(results.get(vid, []))
        if row.get("status") == "ok":
            res += check_constraints(row, constraints)
        bad = [r for r in res if not r.passed and not r.warning]
        margins = [r for r in res if r.margin is not None]
        worst = min(margins, key=lambda r: r.margin) if margins else None
        ran = row.get("status") == "ok"
        score = float("-inf") if not ran else (worst.margin if worst else (0.0 if bad else 1.0))
        if ran and bad and score >= 0:  # a failed check without a margin (collapse, a constraint): fails
            score = -1e-9
        mean = sum(max(-1.0, min(1.0, r.margin)) for r in margins) / len(margins) if margins else 0.0
        out[vid] = Judged(row, ran and not bad, score, worst.check if worst else None,
                          _value(row, worst.check) if worst else None, [f"{r.check}: {r.message}" for r in bad], mean)
    return out


def _value(row: dict, check: str) -> float | None:
    """The row's value of the metric a budget check bounds (an output's or part's where the check names one)."""
    from optbench.check import metric_of

    label, _, key = check.rpartition(".")
    target = metric_of(key)
    if target is None:
        return None
    source = (row.get("outputs") or {}).get(label, row) if label else row
    v = source.get(target[0]) if isinstance(source, dict) else None
    return float(v) if isinstance(v, (int, float)) else None


def outcome(judged: Judged, fp32: Judged | None, effect: float) -> Outcome:
    """What the strategy sees of a candidate's row; faster_than_fp32 by the latency gate's verdict, or, where it
    is inconclusive, by the quiet rounds' level (a choice of where to look next, never the answer's claim)."""
    faster = None
    if fp32 is not None and judged.p50 is not None and fp32.p50 is not None and judged.row is not fp32.row:
        v = verdict(judged.row, fp32.row, effect)
        faster = v.word == "faster" if v.word in ("slower", "faster", "same") else (v.ratio or 1.0) < 1 - effect
    return Outcome(judged.row.get("status") == "ok", judged.passed, judged.score, judged.p50, faster,
                   judged.mean_margin)


def verdict(candidate: dict, fp32: dict, effect: float):
    from optbench.measure.verdict import verdict_for

    return verdict_for(candidate, fp32, effect)


def frontier(judged: list[Judged]) -> list[Judged]:
    """Candidates no other beats on both latency (lower) and worst margin (higher): fastest first."""
    ran = sorted([j for j in judged if j.p50 is not None], key=lambda j: (j.p50, -j.score))
    out, best = [], float("-inf")
    for j in ran:
        if j.score > best:
            out.append(j)
            best = j.score
    return out


def answer(judged: dict[str, Judged], fp32_of: dict[str, Judged], effect: float) -> dict[str, Any]:
    """The fastest passing candidate (and the fastest passing int8-based one), each with its verdict against fp32
    on its backend; the frontier; the closest candidate when none passes."""
    ok = [j for j in judged.values() if j.p50 is not None]
    passing = sorted([j for j in ok if j.passed], key=lambda j: j.p50)
    out: dict[str, Any] = {"frontier": [j.row["variant_id"] for j in frontier(ok)], "passing": len(passing),
                           "candidates": len(judged)}
    if passing:
        out["winner"] = _described(passing[0], fp32_of, effect)
        int8 = [j for j in passing if int8_based(j.row)]
        if int8 and int8[0] is not passing[0]:
            out["int8_winner"] = _described(int8[0], fp32_of, effect)
        elif int8:
            out["int8_winner"] = out["winner"]
    elif ok:
        out["closest"] = _described(_closest(ok), fp32_of, effect)
    int8_ran = [j for j in ok if int8_based(j.row)]
    if int8_ran and "int8_winner" not in out:
        out["closest_int8"] = _described(_closest(int8_ran), fp32_of, effect)
    return out


def int8_based(row: dict) -> bool:
    """An int8 variant whose graph still holds int8 compute (every group moved off int8 leaves a float graph)."""
    held = str(((row.get("settings") or {}).get("int8_graph") or {}).get("quantized_ops") or "")
    return row.get("precision") == "int8" and not held.startswith("0/")


def _closest(judged: list[Judged]) -> Judged:
    """The candidate nearest to passing: the largest worst margin, then the fastest."""
    return max(judged, key=lambda j: (j.score, -(j.p50 or 0)))


def _described(j: Judged, fp32_of: dict[str, Judged], effect: float) -> dict[str, Any]:
    r = j.row
    d = {"variant_id": r["variant_id"], "backend": r.get("backend"), "precision": r.get("precision"),
         "p50_ms": j.p50, "all_p50_ms": j.all_p50, "binding": j.binding, "value": j.value, "margin": j.score, "passed": j.passed,
         "reasons": j.reasons, "model_bytes": r.get("model_bytes"), "fallbacks": r.get("fallbacks") or {},
         "int8": r.get("int8"), "fp16": r.get("fp16"), "search_step": r.get("search_step"),
         "quantized_ops": ((r.get("settings") or {}).get("int8_graph") or {}).get("quantized_ops")}
    base = fp32_of.get(r.get("backend"))
    if base is not None and base.row is not r and base.p50 is not None and j.p50 is not None:
        v = verdict(r, base.row, effect)
        d["vs_fp32"] = {"variant_id": base.row["variant_id"], "word": v.word, "ratio": v.ratio, "line": v.line,
                        "fp32_p50_ms": base.p50, "settles": v.settles}
    return d


def fragment(described: dict, batch: int, dims: dict) -> str:
    """The candidate's exact settings as a spec fragment to paste (its variants and backend)."""
    import yaml

    variants: dict[str, Any] = {"precision": [described["precision"]], "batch_size": [batch]}
    if dims:
        variants["shapes"] = [dict(dims)]
    if described.get("int8"):
        variants["int8"] = [{k: v for k, v in described["int8"].items() if v is not None}]
    if described.get("fp16"):
        variants["fp16"] = [described["fp16"]]
    backend = {k: v for k, v in described["backend"].items() if v not in (None, {}, [])}
    return yaml.safe_dump({"variants": variants, "backends": [backend if set(backend) != {"name"} else backend["name"]]},
                          sort_keys=False, width=110)


def _ms(v) -> str:
    return f"{v:.3g} ms" if isinstance(v, (int, float)) else "-"


def answer_lines(record: dict) -> list[str]:
    """The answer in sentences (the terminal after `optbench tune`, the report's search section)."""
    a = record.get("answer") or {}
    pt = record.get("point") or {}
    point = f"batch {pt.get('batch')}" + "".join(f", {k}{v}" for k, v in sorted((pt.get('dims') or {}).items()))
    out = [f"searched {a.get('candidates', 0)} variant(s) at {point}; stopped: {record.get('stopped')}"]
    for note in record.get("notes") or []:
        out.append(f"note: {note}")
    for key, title in (("winner", "fastest passing"), ("int8_winner", "fastest passing int8-based")):
        w = a.get(key)
        if w is None or (key == "int8_winner" and w["variant_id"] == (a.get("winner") or {}).get("variant_id")):
            continue
        vs = w.get("vs_fp32")
        against = f"; against fp32 ({vs['variant_id']}, {_ms(vs['fp32_p50_ms'])}): {vs['line']}" if vs else ""
        metric = f"{w['binding']} = {w['value']:.4g}" if w.get("value") is not None else "no budget bound it"
        held = f", int8 ops {w['quantized_ops']}" if w.get("quantized_ops") else ""
        fb = "; ".join(f"{len(g)} group{'s' if len(g) != 1 else ''} in {p}" for p, g in (w.get("fallbacks") or {}).items())
        out.append(f"{title}: {w['variant_id']}: p50 {_ms(w['p50_ms'])} in its quiet rounds "
                   f"({_ms(w.get('all_p50_ms'))} over all), {metric} (worst margin {w['margin']:.3g}"
                   f"{held}{', fallbacks: ' + fb if fb else ''}){against}")
    w8 = a.get("int8_winner") or {}
    if (w8.get("vs_fp32") or {}).get("word") in ("same", "slower"):
        out.append(f"no passing int8-based candidate runs faster than fp32 here: the fastest, {w8['variant_id']}, is "
                   f"{w8['vs_fp32']['word']} by the latency gate (the frontier below is the evidence)")
    for t in record.get("confirmations") or []:
        was = "; ".join(f"{vid}: {line}" for vid, line in t["before"].items())
        how = "timed again in pairs" if t.get("paired") else "timed again"
        out.append(f"{how} ({t['attempt']}: {', '.join(t['retimed'])}) because the verdict was inconclusive "
                   f"({was})")
    if "closest" in a:
        c = a["closest"]
        out.append(f"none passes: the closest is {c['variant_id']} (p50 {_ms(c['p50_ms'])}, worst margin "
                   f"{c['margin']:.3g}): {'; '.join(c['reasons'][:3])}")
    if "closest_int8" in a:
        c = a["closest_int8"]
        out.append(f"no int8-based candidate passes; the closest is {c['variant_id']} (p50 {_ms(c['p50_ms'])}, "
                   f"worst margin {c['margin']:.3g}): {'; '.join(c['reasons'][:3])}")
    if a.get("frontier"):
        out.append("frontier (latency vs worst margin), fastest first: " + ", ".join(a["frontier"]))
    return out
