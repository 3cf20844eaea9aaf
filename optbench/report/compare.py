"""Run-to-run comparison: variants matched by id, latency verdicts on round medians (see optbench.measure.verdict)."""

from __future__ import annotations

import html
import io
import math
from pathlib import Path

from optbench.measure.verdict import verdict_for
from optbench.report.build import generated_at, load_run
from optbench.spec.defaults import config_defaults

DRIFT = ["drift_rel_l2", "drift_cosine", "top1_agreement", "task_accuracy"]


def compare_runs(a_dir: Path, b_dir: Path, min_effect: float | None = None) -> dict:
    """A is the baseline, B the candidate; ratio = B / A (> 1 is slower)."""
    effect = min_effect if min_effect is not None else config_defaults("budgets")["latency"]["min_effect"]
    a, b = load_run(a_dir), load_run(b_dir)
    ra = {r["variant_id"]: r for r in a["df"].to_dict("records")}
    rb = {r["variant_id"]: r for r in b["df"].to_dict("records")}
    rows = []
    for vid in sorted(set(ra) & set(rb)):
        x, y = ra[vid], rb[vid]
        row = {"variant_id": vid, "status_a": x["status"], "status_b": y["status"], "ratio": None, "noise": None,
               "mark": "", "reason": ""}
        if x["status"] == y["status"] == "ok":
            v = verdict_for(y, x, effect)
            row.update(ratio=v.ratio, noise=v.noise, p50_a=x["latency_ms_p50"], p50_b=y["latency_ms_p50"], mark=v.word,
                       reason=v.reason)
        for m in DRIFT:
            va, vb = x.get(m), y.get(m)
            row[f"{m}_change"] = (vb - va) if _num(va) and _num(vb) else None
        rows.append(row)
    specs_differ = (a["spec"] or {}).get("name") != (b["spec"] or {}).get("name")
    return {"a": a, "b": b, "rows": rows, "added": sorted(set(rb) - set(ra)), "removed": sorted(set(ra) - set(rb)),
            "effect": effect, "specs_differ": specs_differ}


def _num(v) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def _f(v, spec: str = ".3f") -> str:
    return format(v, spec) if _num(v) else "–"


def render_table(cmp: dict) -> str:
    """The comparison as a terminal table (rich; plain text where the output is not a terminal)."""
    from rich.console import Console
    from rich.table import Table

    colour = {"slower": "red", "faster": "green", "inconclusive": "yellow", "same": ""}
    t = Table(title=f"{cmp['a']['dir'].name} (A) → {cmp['b']['dir'].name} (B): verdicts on round medians, "
                    f"min effect {cmp['effect']:.0%}", title_justify="left")
    for h, just in [("variant", "left"), ("p50 A ms", "right"), ("p50 B ms", "right"), ("B/A rounds", "right"),
                    ("noise", "right"), ("verdict", "left"), ("why", "left")]:
        t.add_column(h, justify=just, overflow="fold")
    for r in cmp["rows"]:
        mark = r["mark"] or f"{r['status_a']}/{r['status_b']}"
        style = colour.get(r["mark"], "")
        t.add_row(r["variant_id"], _f(r.get("p50_a")), _f(r.get("p50_b")), _f(r["ratio"]), _f(r["noise"], ".1%"),
                  f"[{style}]{mark}[/]" if style else mark, r["reason"] if r["mark"] not in ("", "same") else "")
    console = Console(record=True, width=160, force_terminal=False, color_system=None, file=io.StringIO())
    console.print(t)
    counts: dict[str, int] = {}
    for r in cmp["rows"]:
        if r["mark"]:
            counts[r["mark"]] = counts.get(r["mark"], 0) + 1
    tail = ", ".join(f"{n} {w}" for w, n in sorted(counts.items()))
    extra = (f"\nadded in B: {', '.join(cmp['added'])}" if cmp["added"] else "") + \
        (f"\nremoved in B: {', '.join(cmp['removed'])}" if cmp["removed"] else "")
    note = ("B/A rounds: the ratio of the quiet rounds' medians, which the verdict weighs; the p50 columns are "
            "over every sample, so their ratio can differ\n")
    return console.export_text() + note + f"latency: {tail or 'no variant measured in both runs'}{extra}\n"


def render(cmp: dict, fmt: str) -> str:
    if fmt == "table":
        return render_table(cmp)
    if fmt == "md":
        lines = [f"## optbench compare: {cmp['a']['dir'].name} → {cmp['b']['dir'].name}", "",
                 "| variant | p50 A ms | p50 B ms | B/A rounds | noise | verdict |", "|---|---|---|---|---|---|"]
        for r in cmp["rows"]:
            lines.append(f"| {r['variant_id']} | {_f(r.get('p50_a'))} | {_f(r.get('p50_b'))} | {_f(r['ratio'])} | "
                         f"{_f(r['noise'], '.1%')} | {r['mark']} |")
        lines += ["", f"added: {', '.join(cmp['added']) or 'none'}", f"removed: {', '.join(cmp['removed']) or 'none'}"]
        return "\n".join(lines) + "\n"
    if fmt == "csv":
        import pandas as pd

        return pd.DataFrame(cmp["rows"]).to_csv(index=False)
    e = html.escape
    body = "".join(
        f"<tr><td>{e(r['variant_id'])}</td><td>{e(r['status_a'])}</td><td>{e(r['status_b'])}</td>"
        f"<td>{_f(r.get('p50_a'))}</td><td>{_f(r.get('p50_b'))}</td><td>{_f(r['ratio'])}</td>"
        f"<td>{_f(r['noise'], '.1%')}</td><td class='{e(r['mark'])}' title='{e(r['reason'])}'>{e(r['mark'])}</td>"
        + "".join(f"<td>{_f(r[f'{m}_change'], '+.3g')}</td>" for m in DRIFT) + "</tr>"
        for r in cmp["rows"])
    head = "".join(f"<th>{h}</th>" for h in ["variant", "status A", "status B", "p50 A (ms)", "p50 B (ms)", "B/A rounds",
                                            "noise", "verdict"] + [f"Δ {m}" for m in DRIFT])
    lst = lambda xs: "".join(f"<li>{e(x)}</li>" for x in xs) or "<li>none</li>"  # noqa: E731
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>optbench compare</title><style>"
            "body{font:14px system-ui;margin:2em}table{border-collapse:collapse;font-size:12px}"
            "td,th{border:1px solid #ddd;padding:3px 6px}.slower{background:#f9d6d5}.faster{background:#e3f4e1}.inconclusive{background:#fff3cd}"
            f"</style></head><body><h1>optbench compare</h1><p>A (baseline): {e(str(cmp['a']['dir']))}<br>"
            f"B: {e(str(cmp['b']['dir']))}<br>generated {generated_at()}. Verdicts on round medians: faster or slower beyond "
            f"{cmp['effect']:.0%} and beyond the rounds' noise; inconclusive where the noise or a busy machine "
            f"hides the answer (hover a verdict for its numbers). B/A rounds is the ratio of the quiet rounds' medians the verdict weighs; the p50 columns are over every sample.</p>"
            + ("<p><b>The runs come from different specs.</b></p>" if cmp["specs_differ"] else "") + f"<table><tr>{head}</tr>{body}</table>"
            f"<h2>Added in B</h2><ul>{lst(cmp['added'])}</ul><h2>Removed in B</h2><ul>{lst(cmp['removed'])}</ul>"
            "</body></html>")
