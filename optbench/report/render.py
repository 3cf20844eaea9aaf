"""Render a loaded run as HTML (jinja2, autoescaped), Markdown or CSV."""

from __future__ import annotations

import math
from pathlib import Path

import jinja2

from optbench.report import (
    accuracy_metric,
    best_under_budgets,
    enrich,
    generated_at,
    pareto_frontier,
    plots,
    verdicts,
)
from optbench.report.decide import decisions, parse_constraint

SUMMARY = [("variant_id", "variant"), ("backend", "backend"), ("device", "device"), ("precision", "precision"),
           ("transform", "transform"), ("batch_size", "batch"), ("shape_label", "shape"), ("status", "status"),
           ("latency_ms_p50", "p50 ms"), ("latency_ms_p99", "p99 ms"), ("gpu_ms_p50", "GPU p50 ms"),
           ("throughput_items_s", "items/s"), ("speedup", "speedup vs reference runtime fp32"), ("model_bytes", "model MiB"),
           ("drift_rel_l2", "rel L2"), ("drift_cosine", "cosine"), ("top1_agreement", "top-1 agree"),
           ("task_accuracy", "task acc")]
DRIFT = ["drift_max_abs", "drift_mean_abs", "drift_rel_l2", "drift_cosine", "top1_agreement", "task_accuracy"]
# task metric columns shown where a run has them (labels for the table)
TASK_COLUMNS = [("topk_agreement", "top-k agree"), ("det_f1", "det F1"), ("det_map50", "mAP@0.5"),
                ("ctc_exact_rate", "exact strings"), ("ctc_cer", "CER"), ("ctc_label_exact_rate", "exact vs labels"),
                ("embedding_cosine", "emb. cosine"), ("retrieval_agreement", "retrieval agree"),
                ("dense_iou", "map IoU"), ("worst_output", "worst output")]


def verdict_column(df, failing: dict[str, list[str]], width: int) -> list[str]:
    """Per row: 'pass', 'fail: <reasons>' cut to ``width`` characters, or '' for rows not measured."""
    return [("fail: " + "; ".join(failing[v])[:width]) if v in failing else ("pass" if s == "ok" else "")
            for v, s in zip(df.variant_id, df.status)]


def summary_columns(df) -> list[tuple[str, str]]:
    extra = [(c, label) for c, label in TASK_COLUMNS if c in df and df[c].notna().any()]
    extra += [(c, c) for c in df.columns if str(c).startswith("x_") and df[c].notna().any()]
    return SUMMARY + extra + [("verdict", "accuracy verdict")]


def fmt(v, col: str = "") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if col == "model_bytes":
        return f"{v / 2**20:.2f}"
    if col == "speedup":
        return f"{v:.2f}×"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v == 0:
            return "0"
        return f"{v:.3g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.4g}"
    return str(v)


def _env():
    loader = jinja2.FileSystemLoader(Path(__file__).parent / "templates")
    env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["fmt"] = fmt
    return env


def context(run: dict) -> dict:
    df = enrich(run["df"])
    verdict, failing = verdicts(df, run)
    decided = decisions(df, failing, run_constraints(run), run["ref"].get("reference", ""))
    df["verdict"] = verdict_column(df, failing, 300)
    ok = df[df.status == "ok"]
    passing = ok[~ok.variant_id.isin(failing)]  # only variants within every budget are recommended
    ok_plot = ok.dropna(subset=["latency_ms_p50"])
    metric = accuracy_metric(ok)
    passing_plot = passing.dropna(subset=["latency_ms_p50"])
    frontier = pareto_frontier(passing_plot, metric) if not passing_plot.empty else passing_plot
    figures = []
    if not ok_plot.empty:
        for title, uri in [
            ("Latency vs batch size", plots.latency_vs_batch(ok_plot)),
            ("Throughput", plots.throughput_bars(ok_plot)),
            ("Accuracy vs latency (Pareto)", plots.pareto(ok_plot, metric, frontier)),
            ("Peak memory", plots.memory_bars(ok_plot)),
            ("Latency vs shape", plots.latency_vs_shape(ok_plot)),
        ]:
            if uri:
                figures.append({"title": title, "uri": uri})
    columns = summary_columns(df)
    rows = []
    for r in df.to_dict("records"):
        cells = []
        for col, _ in columns:
            ok_flag = verdict.get((r["variant_id"], col))
            if col == "verdict" and r[col]:
                ok_flag = r[col] == "pass"
            cls = "" if ok_flag is None else ("pass" if ok_flag else "fail")
            raw = r.get(col)
            sort = raw if isinstance(raw, (int, float)) and not (isinstance(raw, float) and math.isnan(raw)) else ""
            cells.append({"text": fmt(raw, col), "cls": cls, "sort": sort})
        rows.append(cells)
    env = run["env"]
    return {
        "name": run["spec"].get("name", run["dir"].name), "description": run["spec"].get("description"),
        "decisions": decided,
        "generated": generated_at(), "env": env, "ref": run["ref"], "columns": [c[1] for c in columns],
        "rows": rows, "figures": figures, "metric": metric,
        "frontier": frontier[["variant_id", "ms_per_item", metric]].to_dict("records") if not frontier.empty else [],
        "best": best_under_budgets(passing, metric, run["ref"].get("reference_task_accuracy")
                                   if metric == "task_accuracy" else None) if not passing.empty else [],
        "drift": ok[["variant_id"] + DRIFT].to_dict("records"), "drift_cols": DRIFT,
        "problems": df[df.status.isin(["failed", "timeout", "skipped"])][["variant_id", "status", "error"]].to_dict("records"),
        "warnings": [(r["variant_id"], w) for r in ok.to_dict("records") for w in (r.get("warnings") or [])],
        "spec_text": run["spec_text"], "counts": df.status.value_counts().to_dict(),
        "gpu_rows": gpu_rows(ok),
        "has_gpu_time": ok["gpu_ms_p50"].notna().any() if "gpu_ms_p50" in ok else False,
    }


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
            "variant_id": r["variant_id"],
            "peak_mib": peak / 2**20 if isinstance(peak, (int, float)) and peak == peak else None,
            "source": settings.get("gpu_memory") or settings.get("gpu_memory_note") or "–",
            "process_mib": proc / 2**20 if isinstance(proc, (int, float)) and proc == proc else None,
            "sm": s.get("sm_clock_mhz", "–"), "sm_max": s.get("max_sm_clock_mhz", "–"),
            "temp": s.get("temperature_c", "–"), "power": s.get("power_w"),
            "reasons": ", ".join(x for x in (s.get("clock_event_reasons") or []) if x != "gpu_idle") or "none",
        })
    return out


def render_html(run: dict) -> str:
    return _env().get_template("report.html.j2").render(**context(run))


def run_constraints(run: dict) -> list:
    """The spec's constraints and those given on the command line (``run["constraints"]``)."""
    texts = list((run.get("spec") or {}).get("constraints") or []) + list(run.get("constraints") or [])
    return [parse_constraint(t, "constraints") for t in texts]


def summary_lines(run: dict, df=None, failing: dict | None = None) -> list[str]:
    """The decision per point, one sentence each (Markdown, the terminal after `optbench run`); ``df`` (enriched)
    and ``failing`` where the caller has them already."""
    if df is None:
        df = enrich(run["df"])
    if failing is None:
        _, failing = verdicts(df, run)
    return [d["sentence"] for d in decisions(df, failing, run_constraints(run), run["ref"].get("reference", ""))]


def render_md(run: dict) -> str:
    df = enrich(run["df"])
    cols = ["variant_id", "status", "latency_ms_p50", "throughput_items_s", "speedup", "drift_rel_l2", "task_accuracy"]
    _, failing = verdicts(df, run)
    df["verdict"] = verdict_column(df, failing, 200)
    cols += [c for c, _ in TASK_COLUMNS if c in df and df[c].notna().any()] + ["verdict"]
    head = "| " + " | ".join(cols) + " |\n|" + "---|" * len(cols) + "\n"
    body = "".join("| " + " | ".join(_md(fmt(r[c], c)) for c in cols) + " |\n" for r in df.to_dict("records"))
    counts = ", ".join(f"{v} {k}" for k, v in df.status.value_counts().items())
    name = _md(str(run["spec"].get("name", "")))
    decided = "".join(f"- {_md(line)}\n" for line in summary_lines(run, df, failing))
    return (f"## optbench: {name}\n\n### What to ship\n\n{decided}\n{counts} · host: "
            f"{_md(str(run['env'].get('cpu', '')))}\n\n{head}{body}")


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def render_csv(run: dict) -> str:
    df = run["df"].drop(columns=["samples_ms"])
    return df.to_csv(index=False)

