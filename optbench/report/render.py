"""Render a loaded run as HTML (jinja2, autoescaped), Markdown or CSV."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import optbench.report.plots as plots
from optbench.backends import get_backend, reference_backend_of
from optbench.report.build import (
    accuracy_metric,
    best_under_budgets,
    enrich,
    generated_at,
    load_run,
    point_title,
    reference_of,
    spread_warn_of,
    verdicts,
)
from optbench.report.decide import decisions, parse_constraint
from optbench.report.explain import section as explain_section
from optbench.report.search import section as search_section
from optbench.report.write import fmt, html, md_table, md_text
from optbench.row import as_warning
from optbench.store import schema_note

# the results table: batch and shape are the group a row sits in, not columns
SUMMARY = [("variant_id", "variant"), ("backend", "backend"), ("device", "device"), ("precision", "precision"),
           ("transform", "transform"), ("latency_ms_p50", "p50 ms"), ("latency_round_spread", "round spread"),
           ("latency_ms_p99", "p99 ms"), ("gpu_ms_p50", "GPU p50 ms"), ("throughput_items_s", "items/s"),
           ("speedup", "speedup vs ref. fp32"), ("model_bytes", "model MiB"),
           ("rss_delta_bytes", "host RSS Δ MiB"), ("gpu_peak_bytes", "GPU peak MiB"),
           ("drift_rel_l2", "rel L2"), ("drift_cosine", "cosine"), ("top1_agreement", "top-1 agree"),
           ("task_accuracy", "task acc")]
DRIFT = ["drift_max_abs", "drift_mean_abs", "drift_rel_l2", "drift_cosine", "top1_agreement", "task_accuracy"]
# task metric columns shown where a run has them (labels for the table)
TASK_COLUMNS = [("serving_peak_qps", "peak QPS at p99 bound"), ("energy_j_per_item", "J per item"),
                ("soak_rss_mb_per_min", "soak RSS MiB/min"), ("topk_agreement", "top-k agree"), ("det_f1", "det F1"), ("det_map50", "mAP@0.5"),
                ("ctc_exact_rate", "exact strings"), ("ctc_cer", "CER"), ("ctc_label_exact_rate", "exact vs labels"),
                ("embedding_cosine", "emb. cosine"), ("retrieval_agreement", "retrieval agree"),
                ("dense_iou", "map IoU"), ("worst_output", "worst output")]
NOISE_FLAGS = ("unstable", "busy")  # warning codes (optbench/row/warning_codes.py) that put a ⚠ on the latency


def verdict_column(df, failing: dict[str, list[str]], width: int) -> list[str]:
    """Per row: 'pass', 'fail: <reasons>' cut to ``width`` characters, or '' for rows not measured."""
    return [("fail: " + "; ".join(failing[v])[:width]) if v in failing else ("pass" if s == "ok" else "")
            for v, s in zip(df.variant_id, df.status)]


# columns said once above the table when every measured row has the same value (the table fits 1280 px)
SHARED = ("backend", "device", "precision", "transform")


def summary_columns(df) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """The results table's columns, the verdict beside the variant's name; and the identity columns every
    measured row shares (one backend, one device), said once above the table instead. The rounds' spread is in
    each p50 cell's hover text, not a column."""
    ok = df[df.status == "ok"] if "status" in df else df
    shared = {c: str(ok[c].iloc[0]) for c in SHARED if c in ok and len(ok) and ok[c].nunique(dropna=False) == 1}
    present = [(c, label) for c, label in SUMMARY
               if c not in shared and c != "latency_round_spread"
               and (c in ("variant_id", "latency_ms_p50") or (c in df and df[c].notna().any()))]
    if "worst_output" in ok and len(ok) and ok["worst_output"].nunique(dropna=False) == 1:
        shared["worst output"] = str(ok["worst_output"].iloc[0])
    extra = [(c, label) for c, label in TASK_COLUMNS
             if c in df and df[c].notna().any() and not (c == "worst_output" and "worst output" in shared)]
    ks = sorted({int(k) for k in df["topk_k"].dropna()}) if "topk_k" in df else []
    extra = [(c, f"top-{ks[0]} agree" if c == "topk_agreement" and len(ks) == 1 else label) for c, label in extra]
    extra += [(c, c) for c in df.columns if str(c).startswith("x_") and df[c].notna().any()]
    return present[:1] + [("verdict", "accuracy verdict")] + present[1:] + extra, shared


def noise_flags(row: dict) -> list[str]:
    return [w["message"] for w in map(as_warning, row.get("warnings") or []) if w["code"] in NOISE_FLAGS]


def skip_kind(reason) -> str:
    """'filter' for a variant the user's own ``only:`` left out, 'cannot' for one the backend cannot build."""
    return "filter" if "restricted by options.only" in str(reason or "") else "cannot"


def row_groups(df, verdict: dict, columns: list[tuple[str, str]]) -> list[dict]:
    """The ok rows by (batch, shape) point, fastest first; each cell with its text, class and sort key."""
    ok = df[df.status == "ok"]
    groups = []
    for (batch, _), g in ok.groupby(["batch_size", "shape_sort"], sort=True):
        rows = []
        for r in g.sort_values("latency_ms_p50").to_dict("records"):
            cells = []
            flags = noise_flags(r)
            for col, _ in columns:
                ok_flag = verdict.get((r["variant_id"], col))
                if col == "verdict" and r[col]:
                    ok_flag = r[col] == "pass"
                cls = "" if ok_flag is None else ("pass" if ok_flag else "fail")
                raw = r.get(col)
                text, title = fmt(raw, col), ""
                if col == "latency_ms_p50":
                    spread = r.get("latency_round_spread")
                    title = "; ".join(([f"round medians spread {fmt(spread, 'latency_round_spread')}"]
                                       if isinstance(spread, float) and not math.isnan(spread) else []) + flags)
                    if flags:
                        cls, text = "noisy", text + " ⚠"
                if col == "speedup" and isinstance(r.get("speedup_note"), str):
                    cls, text, title = "noisy", text + " ⚠", "unreliable: " + r["speedup_note"]
                sort = raw if isinstance(raw, (int, float)) and not (isinstance(raw, float) and math.isnan(raw)) else ""
                cells.append({"text": text, "cls": cls, "sort": sort, "title": title})
            rows.append(cells)
        groups.append({"title": point_title(batch, g["shape_label"].iloc[0]), "rows": rows})
    return groups


def failed_rows(df) -> list[dict]:
    bad = df[df.status.isin(["failed", "timeout"])]
    out = []
    for r in bad.to_dict("records"):
        stage = r.get("failed_stage")
        stage = stage if isinstance(stage, str) and stage else ("timing limit" if r["status"] == "timeout" else "not recorded")
        out.append({"variant_id": r["variant_id"], "status": r["status"], "stage": stage,
                    "reason": str(r.get("error") or "").strip()})
    return out


def skipped_groups(df) -> dict[str, dict]:
    """Skipped rows collapsed: those the user's filters left out, and those no backend can build, by reason."""
    sk = df[df.status == "skipped"]
    out = {}
    for kind in ("filter", "cannot"):
        rows = [r for r in sk.to_dict("records") if skip_kind(r.get("error")) == kind]
        reasons: dict[str, int] = {}
        for r in rows:
            key = str(r.get("error") or "no reason recorded")
            if kind == "filter":
                key = key.split(" restricted by")[0].split(".")[0]  # the precision the filter left out
            reasons[key] = reasons.get(key, 0) + 1
        out[kind] = {"count": len(rows), "reasons": sorted(reasons.items(), key=lambda kv: -kv[1]),
                     "rows": [(r["variant_id"], str(r.get("error") or "")) for r in rows]}
    return out


def context(run: dict) -> dict:
    df = enrich(run["df"], spread_warn_of(run))
    verdict, failing = verdicts(df, run)
    decided = run_decisions(run, df, failing)
    df["verdict"] = verdict_column(df, failing, 300)
    ok = df[df.status == "ok"]
    passing = ok[~ok.variant_id.isin(failing)]  # only variants within every budget are recommended
    ok_plot = ok.dropna(subset=["latency_ms_p50"])
    metric = accuracy_metric(ok)
    skipped: list[str] = []  # sections that failed: said at the top of the report, never ending the command
    say = run.get("say") or (lambda _text: None)
    say("drawing the plots")
    figures = _section("plots", skipped, _figures, ok_plot, passing, metric) or []
    columns, shared = summary_columns(df)
    column, higher, _ = plots.pareto_metric(ok_plot, metric) if not ok_plot.empty else (metric, True, "")
    frontier = []
    for (batch, _), g in passing.dropna(subset=["latency_ms_p50"]).groupby(["batch_size", "shape_sort"], sort=True):
        f = plots.frontier_of(g, column, higher)
        if not f.empty:
            frontier.append({"point": point_title(batch, g["shape_label"].iloc[0]), "variants": list(f["variant_id"])})
    env = run["env"]
    say("reading the run history")
    trended = _section("trend in the run history", skipped, trend, run)
    return {
        "name": run["spec"].get("name", run["dir"].name), "description": run["spec"].get("description"),
        "decisions": decided,
        "generated": generated_at(), "env": env, "ref": run["ref"], "columns": [c[1] for c in columns],
        "ref_title": get_backend(reference_backend_of(reference_of(run))).reference_title + " at fp32",
        "schema_note": schema_note(run["dir"]),
        "shared": shared,
        "groups": row_groups(df, verdict, columns), "figures": figures, "metric": metric, "frontier_metric": column,
        "frontier": frontier,
        "best": best_under_budgets(passing, metric, run["ref"].get("reference_task_accuracy")
                                   if metric == "task_accuracy" else None) if not passing.empty else [],
        "drift": ok[["variant_id"] + DRIFT].to_dict("records"), "drift_cols": DRIFT,
        "failed": failed_rows(df), "skipped": skipped_groups(df),
        "warnings": [(r["variant_id"], as_warning(w)["message"]) for r in ok.to_dict("records")
                     for w in (r.get("warnings") or [])],
        "spec_text": run["spec_text"], "counts": df.status.value_counts().to_dict(),
        "gpu_rows": _section("GPU memory and state", skipped, gpu_rows, ok) or [],
        "gpu_spread": _section("GPUs compared", skipped, gpu_spread, ok, env),
        "conversion": _section("conversion steps", skipped, conversion_rows, ok) or [],
        "trend": trended,
        "has_gpu_time": ok["gpu_ms_p50"].notna().any() if "gpu_ms_p50" in ok else False,
        "search": _section("search", skipped, search_section, run["dir"]),
        "explained": _section("where the drift comes from (explain)", skipped, explain_section, run, df, failing,
                              compute=run.get("explain", True)),
        "sections_skipped": skipped,
    }


def _section(name: str, skipped: list[str], build, *args, **kwargs):
    """A report section's content; a section that fails in any way is left out, its reason added to ``skipped``
    (shown at the top of the report), and never ends the command that writes the report."""
    try:
        return build(*args, **kwargs)
    except Exception as e:
        why = (str(e).strip().splitlines() or [""])[0][:300]
        skipped.append(f"{name}: {e.__class__.__name__}{': ' + why if why else ''}")
        return None


def _figures(ok_plot, passing, metric: str) -> list[dict]:
    """The report's plots, each a title and a data URI."""
    if ok_plot.empty:
        return []
    colour = plots.colours(ok_plot["series"])
    candidates = [("Throughput vs latency across batch sizes", plots.throughput_vs_latency(ok_plot, colour)),
                  ("Latency vs batch size", plots.latency_vs_batch(ok_plot, colour))]
    for shape, g in ok_plot.groupby("shape_label", sort=True):
        candidates.append((f"Accuracy vs latency (Pareto){'' if shape == '-' else ' at ' + shape}",
                           plots.pareto(g, passing, metric, colour, shape)))
    candidates += [("Memory per variant", plots.memory_bars(ok_plot)),
                   ("Latency vs shape", plots.latency_vs_shape(ok_plot, colour)),
                   ("Serving: p99 latency under load", plots.serving_load(ok_plot)),
                   ("Serving: throughput vs latency over concurrency", plots.serving_concurrency(ok_plot))]
    return [{"title": t, "uri": u} for t, u in candidates if u]


def trend(run: dict) -> dict | None:
    """The spec's latency trend from the run history, where the history is on and holds two runs or more."""
    name = (run.get("spec") or {}).get("name")
    if not name:
        return None
    try:
        from optbench.history.store import machine_of, open_history
        from optbench.history.trends import trend_rows

        history = open_history()
        rows = trend_rows(history, name, machine_of(run.get("env") or {})) \
            if history is not None and name in history.spec_names() else []
    except Exception as e:  # the history is an extra: a database that cannot be read never stops a report
        return {"rows": [], "note": f"the run history could not be read ({e.__class__.__name__})"}
    return {"rows": rows, "note": "", "db": history.safe_url} if rows else None


def conversion_rows(ok) -> list[dict]:
    """Each variant's conversion steps with the drift each added (rows that carry a chain: schema 4 and later)."""
    out = []
    for r in ok.to_dict("records"):
        for s in r.get("conversion") if isinstance(r.get("conversion"), list) else []:
            tool = " ".join(str(x) for x in (s.get("tool"), s.get("version")) if x)
            out.append({"variant_id": r["variant_id"], "step": s.get("step"),
                        "tool": tool + (f", opset {s['opset']}" if s.get("opset") else ""),
                        "drift_rel_l2": s.get("drift_rel_l2"), "worst_output": s.get("worst_output") or ""})
    return out


def gpu_rows(ok) -> list[dict]:
    """Per-variant GPU memory (and where it came from) and the GPU's state after the timing loop."""
    out = []
    for r in ok.to_dict("records"):
        settings = r.get("settings") if isinstance(r.get("settings"), dict) else {}
        states = settings.get("gpu_state") or {}
        if not states and not settings.get("gpu_memory"):
            continue
        s = states.get("after_timing") or states.get("end") or {}
        proc = r.get("gpu_process_peak_bytes")
        peak = r.get("gpu_peak_bytes")
        out.append({
            "variant_id": r["variant_id"], "gpu": r.get("gpu") if r.get("gpu") == r.get("gpu") else None,
            "peak_mib": peak / 2**20 if isinstance(peak, (int, float)) and peak == peak else None,
            "source": settings.get("gpu_memory") or settings.get("gpu_memory_note") or "–",
            "process_mib": proc / 2**20 if isinstance(proc, (int, float)) and proc == proc else None,
            "sm": s.get("sm_clock_mhz", "–"), "sm_max": s.get("max_sm_clock_mhz", "–"),
            "temp": s.get("temperature_c", "–"), "power": s.get("power_w"),
            "reasons": ", ".join(x for x in (s.get("clock_event_reasons") or []) if x != "gpu_idle") or "none",
        })
    return sorted(out, key=lambda g: (g["gpu"] is None, g["gpu"] if g["gpu"] is not None else 0))


def gpu_spread(ok, env: dict) -> dict | None:
    """Where a sweep timed on more than one GPU: the variants per GPU, and what differs between the GPUs (model,
    the highest SM clock and temperature they showed after timing) that could tell in their latencies."""
    rows = [r for r in ok.to_dict("records") if isinstance(r.get("gpu"), (int, float)) and r["gpu"] == r["gpu"]]
    used = sorted({int(r["gpu"]) for r in rows})
    if len(used) < 2:
        return None
    listed = env.get("gpus") or []
    names = {i: (listed[i].get("name") or "?") if i < len(listed) else "?" for i in used}
    seen: dict[int, dict] = {i: {"variants": 0, "sm": [], "temp": []} for i in used}
    for r in rows:
        g = seen[int(r["gpu"])]
        g["variants"] += 1
        s = ((r.get("settings") or {}).get("gpu_state") or {}).get("after_timing") or {}
        if isinstance(s.get("sm_clock_mhz"), (int, float)):
            g["sm"].append(s["sm_clock_mhz"])
        if isinstance(s.get("temperature_c"), (int, float)):
            g["temp"].append(s["temperature_c"])
    per = [{"gpu": i, "name": names[i], "variants": seen[i]["variants"],
            "sm": max(seen[i]["sm"]) if seen[i]["sm"] else None, "temp": max(seen[i]["temp"]) if seen[i]["temp"] else None}
           for i in used]
    warn = []
    if len({p["name"] for p in per}) > 1:
        warn.append("the GPUs are different models: compare variants on one GPU only")
    sms = [p["sm"] for p in per if p["sm"]]
    if len(sms) > 1 and max(sms) > 1.05 * min(sms):
        warn.append(f"the GPUs' SM clocks after timing differ ({min(sms):g} vs {max(sms):g} MHz)")
    temps = [p["temp"] for p in per if p["temp"] is not None]
    if len(temps) > 1 and max(temps) - min(temps) > 10:
        warn.append(f"the GPUs' temperatures after timing differ by {max(temps) - min(temps):g} °C")
    return {"per": per, "warnings": warn}


def render_html(run: dict) -> str:
    return html("report.html.j2", **context(run))


def run_constraints(run: dict) -> list:
    """The spec's constraints and those given on the command line (``run["constraints"]``)."""
    texts = list((run.get("spec") or {}).get("constraints") or []) + list(run.get("constraints") or [])
    return [parse_constraint(t, "constraints") for t in texts]


def summary_lines(run: dict, df=None, failing: dict | None = None) -> list[str]:
    """The decision per point, one sentence each (Markdown, the terminal after `optbench run`); ``df`` (enriched)
    and ``failing`` where the caller has them already."""
    if df is None:
        df = enrich(run["df"], spread_warn_of(run))
    if failing is None:
        _, failing = verdicts(df, run)
    return [d["sentence"] for d in run_decisions(run, df, failing)]


def run_decisions(run: dict, df, failing: dict) -> list[dict]:
    """The decisions of a loaded run: its constraints, reference, spread_warn, and whether its data was random."""
    random_inputs = ((run.get("spec") or {}).get("data") or {}).get("source") == "synthetic"
    return decisions(df, failing, run_constraints(run), reference_of(run), spread_warn_of(run), random_inputs)


MD_COLUMNS = ["variant_id", "latency_ms_p50", "latency_round_spread", "throughput_items_s", "speedup", "model_bytes",
              "drift_rel_l2", "task_accuracy"]


def render_md(run: dict) -> str:
    """What to ship, then a table per (batch, shape) point (fastest first), failed variants with the stage that
    failed, and skipped ones as counts: for a pull-request comment or a job summary."""
    df = enrich(run["df"], spread_warn_of(run))
    _, failing = verdicts(df, run)
    df["verdict"] = verdict_column(df, failing, 200)
    labels = dict(SUMMARY + TASK_COLUMNS)
    cols = [c for c in MD_COLUMNS if c == "variant_id" or (c in df and df[c].notna().any())]
    cols += [c for c, _ in TASK_COLUMNS if c in df and df[c].notna().any()] + ["verdict"]
    names = [labels.get(c, c).replace("speedup vs ref. fp32", "speedup") for c in cols]
    counts = ", ".join(f"{v} {k}" for k, v in df.status.value_counts().items())
    name = md_text(run["spec"].get("name", ""))
    decided = "".join(f"- {md_text(line)}\n" for line in summary_lines(run, df, failing))
    host = md_text(run["env"].get("cpu", ""))
    parts = [f"## optbench: {name}\n\n### What to ship\n\n{decided}\n{counts} · host: {host}\n"]
    ok = df[df.status == "ok"]
    for (batch, _), g in ok.groupby(["batch_size", "shape_sort"], sort=True):
        cells = [[fmt(r.get(c), c) + (" ⚠" if c == "latency_ms_p50" and noise_flags(r) else "") for c in cols]
                 for r in g.sort_values("latency_ms_p50").to_dict("records")]
        parts.append(f"### {point_title(batch, g['shape_label'].iloc[0])}\n\n{md_table(names, cells)}")
    if any(noise_flags(r) for r in ok.to_dict("records")):
        parts.append("⚠: unstable rounds or a busy machine while timing (see the HTML report's warnings).\n")
    failed = failed_rows(df)
    if failed:
        parts.append("### Failed\n\n" + "".join(f"- {md_text(f['variant_id'])} ({f['status']} at "
                                                  f"{md_text(f['stage'])}): {md_text(f['reason'][:300])}\n"
                                                  for f in failed))
    skipped = skipped_groups(df)
    lines = []
    if skipped["filter"]["count"]:
        lines.append(f"- {skipped['filter']['count']} left out by the spec's `only:` filters")
    for reason, n in skipped["cannot"]["reasons"]:
        lines.append(f"- {n} that a backend cannot build: {md_text(reason)}")
    if lines:
        parts.append("### Skipped\n\n" + "\n".join(lines) + "\n")
    sections_skipped: list[str] = []
    steps = _section("conversion steps", sections_skipped, conversion_rows, ok) or []
    if sections_skipped:
        parts.append("Sections skipped: " + "; ".join(md_text(x) for x in sections_skipped) + "\n")
    if steps:
        cells = [[md_text(c["variant_id"]), md_text(c["step"]), md_text(c["tool"]), fmt(c["drift_rel_l2"], "drift_rel_l2")]
                 for c in steps]
        parts.append("### Conversion steps\n\n" + md_table(["variant", "step", "tool", "drift added (rel. L2)"], cells))
    return "\n".join(parts)


def render_csv(run: dict) -> str:
    from optbench.store import csv_text

    return csv_text(run["df"])


def write_report(run_dir: Path, out: Path | None = None, fmt: str = "html", constraints: list[str] | None = None,
                 explain: bool = True, say: Callable[[str], None] | None = None) -> Path:
    """The report; ``explain``: explain failed or marginal variants not explained yet (see report/explain.py);
    ``say``: told of each step as it starts (a report of a large run takes tens of seconds)."""
    say = say or (lambda _text: None)
    say(f"reading {run_dir}")
    run = load_run(Path(run_dir))
    run["constraints"] = list(constraints or [])
    run["explain"] = explain
    run["say"] = say
    out = Path(out) if out else Path(run_dir) / {"html": "report.html", "md": "report.md", "csv": "report.csv"}[fmt]
    out.parent.mkdir(parents=True, exist_ok=True)
    text = {"html": render_html, "md": render_md, "csv": render_csv}[fmt](run)
    say(f"writing {out}")
    out.write_text(text, encoding="utf-8")
    return out
