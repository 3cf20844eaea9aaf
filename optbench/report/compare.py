"""Run-to-run comparison: variants matched by id, latency verdicts on round medians (see optbench.measure.verdict),
settled by paired re-timing where they are inconclusive (see optbench.run.retime)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd

from optbench.measure.verdict import verdict_for
from optbench.report.build import generated_at, load_run
from optbench.report.write import html, is_number, md_table, md_text, num
from optbench.spec.defaults import config_defaults

DRIFT = ["drift_rel_l2", "drift_cosine", "top1_agreement", "task_accuracy"]


def compare_runs(a_dir: Path, b_dir: Path, min_effect: float | None = None, retime: str = "off",
                 pairs: int | None = None, say=None) -> dict:
    """A is the baseline, B the candidate; ratio = B / A (> 1 is slower). ``retime`` as for
    :func:`optbench.check.check_run`: a re-timed row keeps its interval and every pair."""
    from optbench.check import retimer

    effect = min_effect if min_effect is not None else config_defaults("budgets")["latency"]["min_effect"]
    a, b = load_run(a_dir), load_run(b_dir)
    settle = retimer(Path(b_dir), Path(a_dir), effect, retime, pairs, say)
    ra = {r["variant_id"]: r for r in a["df"].to_dict("records")}
    rb = {r["variant_id"]: r for r in b["df"].to_dict("records")}
    rows = []
    for vid in sorted(set(ra) & set(rb)):
        x, y = ra[vid], rb[vid]
        row = {"variant_id": vid, "status_a": x["status"], "status_b": y["status"], "ratio": None, "noise": None,
               "mark": "", "reason": "", "interval_low": None, "interval_high": None, "pairs": None}
        if x["status"] == y["status"] == "ok":
            v = verdict_for(y, x, effect)
            if settle is not None:
                v = settle(y, x, v)
            row.update(ratio=v.ratio, noise=v.noise, p50_a=x["latency_ms_p50"], p50_b=y["latency_ms_p50"], mark=v.word,
                       reason=v.reason, pairs=[p.to_dict() for p in v.pairs] or None)
            if v.interval is not None:
                row.update(interval_low=v.interval[0], interval_high=v.interval[1])
        for m in DRIFT:
            va, vb = x.get(m), y.get(m)
            row[f"{m}_change"] = (vb - va) if is_number(va) and is_number(vb) else None
        rows.append(row)
    specs_differ = (a["spec"] or {}).get("name") != (b["spec"] or {}).get("name")
    return {"a": a, "b": b, "rows": rows, "added": sorted(set(rb) - set(ra)), "removed": sorted(set(ra) - set(rb)),
            "effect": effect, "specs_differ": specs_differ}


def render_table(cmp: dict) -> str:
    """The comparison as a terminal table (rich; plain text where the output is not a terminal)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    colour = {"slower": "red", "faster": "green", "inconclusive": "yellow", "same": ""}
    t = Table(title=f"{escape(cmp['a']['dir'].name)} (A) → {escape(cmp['b']['dir'].name)} (B): verdicts on round "
                    f"medians, or paired where an interval is shown; min effect {cmp['effect']:.0%}",
              title_justify="left")
    for h, just in [("variant", "left"), ("p50 A ms", "right"), ("p50 B ms", "right"), ("B/A", "right"),
                    ("paired interval", "right"), ("noise", "right"), ("verdict", "left"), ("why", "left")]:
        t.add_column(h, justify=just, overflow="fold")
    for r in cmp["rows"]:
        mark = r["mark"] or f"{r['status_a']}/{r['status_b']}"
        style = colour.get(r["mark"], "")
        t.add_row(escape(r["variant_id"]), num(r.get("p50_a")), num(r.get("p50_b")), num(r["ratio"]), interval(r),
                  num(r["noise"], ".1%"), f"[{style}]{mark}[/]" if style else mark,
                  escape(r["reason"]) if r["mark"] not in ("", "same") else "")
    console = Console(record=True, width=160, force_terminal=False, color_system=None, file=io.StringIO())
    console.print(t)
    counts: dict[str, int] = {}
    for r in cmp["rows"]:
        if r["mark"]:
            counts[r["mark"]] = counts.get(r["mark"], 0) + 1
    tail = ", ".join(f"{n} {w}" for w, n in sorted(counts.items()))
    extra = (f"\nadded in B: {', '.join(cmp['added'])}" if cmp["added"] else "") + \
        (f"\nremoved in B: {', '.join(cmp['removed'])}" if cmp["removed"] else "")
    note = ("B/A: the ratio of the quiet rounds' medians, which the verdict weighs, or where an interval is shown the "
            "paired estimate from re-timing both sides alternately (its 95 % interval beside); the p50 columns are over "
            "every sample of the runs, so their ratio can differ\n")
    return console.export_text() + note + f"latency: {tail or 'no variant measured in both runs'}{extra}\n"


def render(cmp: dict, fmt: str) -> str:
    """The comparison as a terminal table, Markdown (a pull-request comment), CSV or an HTML page."""
    if fmt == "table":
        return render_table(cmp)
    if fmt == "md":
        return render_md(cmp)
    if fmt == "csv":  # a re-timed row's pairs as JSON in their cell
        rows = [{**r, "pairs": json.dumps(r["pairs"]) if r.get("pairs") else None} for r in cmp["rows"]]
        return pd.DataFrame(rows).to_csv(index=False)
    return html("compare.html.j2", a_dir=str(cmp["a"]["dir"]), b_dir=str(cmp["b"]["dir"]), generated=generated_at(),
                effect=cmp["effect"], specs_differ=cmp["specs_differ"], rows=cmp["rows"], drift=DRIFT,
                added=cmp["added"], removed=cmp["removed"], interval=interval)


def interval(r: dict) -> str:
    """A re-timed row's interval of B/A ("0.982..1.031"), "" for a verdict on the runs' own rounds."""
    return f"{r['interval_low']:.3f}..{r['interval_high']:.3f}" if is_number(r.get("interval_low")) else ""


def render_md(cmp: dict) -> str:
    table = md_table(["variant", "p50 A ms", "p50 B ms", "B/A", "paired interval", "noise", "verdict"],
                     [[r["variant_id"], num(r.get("p50_a")), num(r.get("p50_b")), num(r["ratio"]), interval(r),
                       num(r["noise"], ".1%"), r["mark"]] for r in cmp["rows"]])
    listed = lambda xs: ", ".join(md_text(x) for x in xs) or "none"  # noqa: E731
    return (f"## optbench compare: {md_text(cmp['a']['dir'].name)} → {md_text(cmp['b']['dir'].name)}\n\n{table}\n"
            f"added: {listed(cmp['added'])}\nremoved: {listed(cmp['removed'])}\n")
