"""The report's section for a run made by ``optbench tune``: the answer, the candidates as points (latency against
the worst margin to a budget), the frontier, the path the search took, the winner's fallbacks and settings."""

from __future__ import annotations

import json
import math
from pathlib import Path

import optbench.report.plots as plots
from optbench.report.plots import PALETTE, WIDTH_IN, plt

PHASES = ["anchor", "calibration", "escalate", "bisect", "level", "give-back"]


def load_search(run_dir: Path) -> dict | None:
    path = Path(run_dir) / "search.json"
    return json.loads(path.read_text()) if path.exists() else None


def _points(record: dict) -> list[dict]:
    out = []
    for step in record.get("steps") or []:
        for c in step["candidates"]:
            o = c["outcome"]
            if o.get("p50") is None or o.get("score") is None or not math.isfinite(o["score"]):
                continue
            out.append({"step": step["step"], "phase": step["phase"], "label": c["label"], "p50": o["p50"],
                        "score": o["score"], "passed": o["passed"], "variants": c["variants"]})
    return out


def search_figure(record: dict):
    """Each candidate at (p50, worst margin): the path in step order, the frontier, the winner starred."""
    pts = _points(record)
    fig, ax = plt.subplots(figsize=(WIDTH_IN * 0.8, 4.6))
    if not pts:
        ax.text(0.5, 0.5, "no candidate was measured", ha="center", transform=ax.transAxes)
        return fig
    ax.plot([p["p50"] for p in pts], [p["score"] for p in pts], color="#a9a9a9", lw=0.8, zorder=1,
            label="path (step order)")
    for i, phase in enumerate(PHASES):
        sel = [p for p in pts if p["phase"] == phase]
        if sel:
            ax.scatter([p["p50"] for p in sel], [p["score"] for p in sel], color=PALETTE[i], s=34, zorder=3,
                       label=phase, edgecolors=["black" if p["passed"] else "none" for p in sel])
    front = sorted(pts, key=lambda p: (p["p50"], -p["score"]))
    line, best = [], float("-inf")
    for p in front:
        if p["score"] > best:
            line.append(p)
            best = p["score"]
    ax.step([p["p50"] for p in line], [p["score"] for p in line], where="post", color="black", lw=1, alpha=0.6,
            zorder=2, label="frontier")
    win = (record.get("answer") or {}).get("winner")
    if win:
        ax.scatter([win["p50_ms"]], [win["margin"]], marker="*", s=220, color="#f58231", edgecolors="black",
                   zorder=4, label="fastest passing")
    for p in pts:
        ax.annotate(str(p["step"]), (p["p50"], p["score"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.axhline(0, color="#e6194b", lw=0.8, ls="--")
    ax.set_yscale("symlog", linthresh=0.05)
    ax.set_xlabel("latency p50 (ms)")
    ax.set_ylabel("worst margin to a budget\n(< 0: fails; relative to the budget)")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return fig


def section(run_dir: Path) -> dict | None:
    """The search section's context, or None for a run made by ``optbench run``."""
    from optbench.tune.answer import answer_lines

    record = load_search(run_dir)
    if record is None:
        return None
    a = record.get("answer") or {}
    steps = [{"step": s["step"], "phase": s["phase"], "label": c["label"], "replayed": s.get("replayed", False),
              "variants": ", ".join(c["variants"].values()), "binding": c.get("binding") or "",
              "value": c.get("value"), **c["outcome"]}
             for s in record.get("steps") or [] for c in s["candidates"]]
    best = a.get("winner") or a.get("closest")
    return {"lines": answer_lines(record), "uri": plots._uri(search_figure(record)), "steps": steps,
            "fallbacks": _fallback_rows(best), "fragment": (best or {}).get("fragment"),
            "best_title": "fastest passing" if a.get("winner") else "closest to passing",
            "rankings": [{"graph": k, "variant": r["variant"], "top": [g for g, _, _ in r["groups"][:5]]}
                         for k, r in (record.get("rankings") or {}).items()]}


def _fallback_rows(best: dict | None) -> list[dict]:
    """The winner's node groups off int8 (or off fp16), each with the node patterns its settings name."""
    if not best:
        return []
    q, h = best.get("int8") or {}, best.get("fp16") or {}
    patterns = {"fp32": q.get("exclude_nodes") or h.get("fp32_nodes") or [], "fp16": q.get("fp16_nodes") or []}
    return [{"precision": p, "count": len(groups), "first": groups[0] if groups else "", "groups": ", ".join(groups),
             "patterns": ", ".join(patterns.get(p, []))} for p, groups in (best.get("fallbacks") or {}).items()]
