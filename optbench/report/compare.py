"""Run-to-run comparison: variants matched by id, latency ratios marked only beyond the samples' noise."""

from __future__ import annotations

import html
import math
from pathlib import Path

from optbench.measure.compare import median_ratio
from optbench.report import generated_at, load_run

DRIFT = ["drift_rel_l2", "drift_cosine", "top1_agreement", "task_accuracy"]


def compare_runs(a_dir: Path, b_dir: Path) -> dict:
    """A is the baseline, B the candidate; ratio = B / A (> 1 is slower)."""
    a, b = load_run(a_dir), load_run(b_dir)
    ra = {r["variant_id"]: r for r in a["df"].to_dict("records")}
    rb = {r["variant_id"]: r for r in b["df"].to_dict("records")}
    rows = []
    for vid in sorted(set(ra) & set(rb)):
        x, y = ra[vid], rb[vid]
        row = {"variant_id": vid, "status_a": x["status"], "status_b": y["status"], "ratio": None, "low": None,
               "high": None, "mark": ""}
        if x["status"] == y["status"] == "ok" and x.get("samples_ms") and y.get("samples_ms"):
            est = median_ratio(y["samples_ms"], x["samples_ms"])
            row.update(ratio=est.ratio, low=est.low, high=est.high, p50_a=x["latency_ms_p50"], p50_b=y["latency_ms_p50"],
                       mark=("slower" if est.ratio > 1 else "faster") if est.significant else "")
        for m in DRIFT:
            va, vb = x.get(m), y.get(m)
            row[f"{m}_change"] = (vb - va) if _num(va) and _num(vb) else None
        rows.append(row)
    return {"a": a, "b": b, "rows": rows, "added": sorted(set(rb) - set(ra)), "removed": sorted(set(ra) - set(rb))}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def _f(v, spec: str = ".3f") -> str:
    return format(v, spec) if _num(v) else "–"


def render(cmp: dict, fmt: str) -> str:
    if fmt == "md":
        lines = [f"## optbench compare: {cmp['a']['dir'].name} → {cmp['b']['dir'].name}", "",
                 "| variant | p50 A ms | p50 B ms | B/A | 99% CI | mark |", "|---|---|---|---|---|---|"]
        for r in cmp["rows"]:
            lines.append(f"| {r['variant_id']} | {_f(r.get('p50_a'))} | {_f(r.get('p50_b'))} | {_f(r['ratio'])} | "
                         f"{_f(r['low'])}–{_f(r['high'])} | {r['mark']} |")
        lines += ["", f"added: {', '.join(cmp['added']) or 'none'}", f"removed: {', '.join(cmp['removed']) or 'none'}"]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        import pandas as pd

        return pd.DataFrame(cmp["rows"]).to_csv(index=False)
    e = html.escape
    body = "".join(
        f"<tr><td>{e(r['variant_id'])}</td><td>{e(r['status_a'])}</td><td>{e(r['status_b'])}</td>"
        f"<td>{_f(r.get('p50_a'))}</td><td>{_f(r.get('p50_b'))}</td><td>{_f(r['ratio'])}</td>"
        f"<td>{_f(r['low'])}–{_f(r['high'])}</td><td class='{e(r['mark'])}'>{e(r['mark'])}</td>"
        + "".join(f"<td>{_f(r[f'{m}_change'], '+.3g')}</td>" for m in DRIFT) + "</tr>"
        for r in cmp["rows"])
    head = "".join(f"<th>{h}</th>" for h in ["variant", "status A", "status B", "p50 A (ms)", "p50 B (ms)", "B/A",
                                            "99% CI", "mark"] + [f"Δ {m}" for m in DRIFT])
    lst = lambda xs: "".join(f"<li>{e(x)}</li>" for x in xs) or "<li>none</li>"  # noqa: E731
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>optbench compare</title><style>"
            "body{font:14px system-ui;margin:2em}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ddd;padding:3px 6px}.slower{background:#f9d6d5}.faster{background:#e3f4e1}"
            f"</style></head><body><h1>optbench compare</h1><p>A (baseline): {e(str(cmp['a']['dir']))}<br>"
            f"B: {e(str(cmp['b']['dir']))}<br>generated {generated_at()}. A ratio is marked only where its 99% "
            f"bootstrap interval excludes 1.</p><table><tr>{head}</tr>{body}</table>"
            f"<h2>Added in B</h2><ul>{lst(cmp['added'])}</ul><h2>Removed in B</h2><ul>{lst(cmp['removed'])}</ul>"
            "</body></html>")
