"""The run report, built: rows loaded and enriched, verdicts, the HTML / Markdown / CSV writer."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

import optbench.clock as clock
from optbench.backends import backend_name_of, get_backend, reference_backend_of
from optbench.check import budget_for, check_accuracy, noise_floor
from optbench.errors import RunDirError

ACCURACY_BUDGETS = (0.0, 0.01, 0.03)  # task-accuracy drops the report names a best variant under


def load_run(run_dir: Path) -> dict:
    from optbench.store import load_results

    run_dir = Path(run_dir)
    if not (run_dir / "results.jsonl").exists():
        raise RunDirError(f"{run_dir} holds no results.jsonl; is it a run directory?")
    df = load_results(run_dir)
    read = lambda name, fn: fn((run_dir / name).read_text()) if (run_dir / name).exists() else {}  # noqa: E731
    return {"dir": run_dir, "df": df, "env": read("env.json", json.loads), "ref": read("reference.json", json.loads),
            "spec": read("spec.yaml", yaml.safe_load), "spec_text": read("spec.yaml", str)}


def _int8_label(v, h=None) -> str:
    """The int8 settings' label, or an fp16 graph's (nodes kept in fp32): the series a row belongs to."""
    from optbench.plan import fp16_label, int8_label
    from optbench.spec.models import Fp16Settings, Int8Settings

    if isinstance(v, dict):
        return int8_label(Int8Settings.model_validate(v))
    return fp16_label(Fp16Settings.model_validate(h)) if isinstance(h, dict) else ""


def spread_warn_of(run: dict) -> float:
    """The run's measure.spread_warn (its spec's, else the default)."""
    from optbench.spec.defaults import config_defaults

    value = ((run.get("spec") or {}).get("measure") or {}).get("spread_warn")
    return float(value) if isinstance(value, (int, float)) else float(config_defaults("measure")["spread_warn"])


def ratio(base: dict, row: dict, spread_warn: float) -> tuple[float, str | None]:
    """How many times faster ``row`` is than ``base``, from both sides' quiet-round levels (the latency gate's);
    and why the ratio is unreliable (a side timed busy, or its rounds spread beyond ``spread_warn``), or None."""
    from optbench.measure.verdict import level, unsteady

    if base.get("variant_id") == row.get("variant_id"):
        return 1.0, None
    lb, lr = level(base), level(row)
    if lb is None or not lr:  # a side not timed (measure.mode: judge)
        return float("nan"), None
    value = lb / lr
    why = [f"{who} was {text}" if text.startswith("timed") else f"{who}'s {text}"
           for who, text in ((base.get("variant_id"), unsteady(base, spread_warn)),
                             (row.get("variant_id"), unsteady(row, spread_warn))) if text]
    return value, "; ".join(why) or None


def enrich(df: pd.DataFrame, spread_warn: float | None = None) -> pd.DataFrame:
    """The rows with the report's derived columns; ``speedup`` against the reference runtime at fp32 at the same
    point, from quiet-round levels, and ``speedup_note`` where it is unreliable (see :func:`ratio`)."""
    from optbench.report.plots import series_label
    from optbench.spec.defaults import config_defaults

    if spread_warn is None:
        spread_warn = float(config_defaults("measure")["spread_warn"])

    df = df.copy()
    for col in ("latency_ms_p50", "latency_ms_p99", "throughput_items_s"):  # None in rows never timed (judge mode)
        if col in df:
            df[col] = pd.to_numeric(df[col])
    df["int8_label"] = [_int8_label(q, h) for q, h in zip(df["int8"], df["fp16"] if "fp16" in df else [None] * len(df))]
    df["series"] = df.apply(series_label, axis=1)
    df["shape_label"] = df["shape"].map(lambda s: "x".join(f"{k}{v}" for k, v in (s or {}).items()) or "-")
    df["shape_sort"] = df["shape"].map(lambda s: tuple(sorted((s or {}).values())))
    df["ms_per_item"] = df["latency_ms_p50"] / df["batch_size"]
    # the reference runtime at fp32: torch for torch models, ONNX Runtime on the CPU for ONNX files (df["..."]:
    # df.transform is DataFrame.transform, a method, which once left this column empty in every report)
    records = df.to_dict("records")
    # rows skipped at plan time are written before the reference is computed: a measured row names it
    named = [r for r in records if isinstance(r.get("reference_backend"), str)] or records
    ref = get_backend(reference_backend_of(named[0])) if named else None
    names = [backend_name_of(r) for r in records]
    runtime = pd.Series([ref is not None and n == ref.name and (ref.reference_for == "torch" or r["device"] == "cpu")
                         for n, r in zip(names, records)], index=df.index, dtype=bool)
    base = df[(df["status"] == "ok") & runtime & (df["precision"] == "fp32") & (df["transform"] == "none")]
    base = base.assign(_own=base["backend"] == (ref.name if ref else "")).sort_values("_own", kind="stable")
    lookup = {(r["batch_size"], r["shape_label"]): r for r in base.to_dict("records")}  # the reference's own last
    speed = [ratio(lookup[(r["batch_size"], r["shape_label"])], r, spread_warn)
             if r["status"] == "ok" and (r["batch_size"], r["shape_label"]) in lookup else (float("nan"), None)
             for r in df.to_dict("records")]
    df["speedup"] = [s[0] for s in speed]
    df["speedup_note"] = [s[1] for s in speed]
    return df


def accuracy_metric(ok: pd.DataFrame) -> str:
    for m in ("task_accuracy", "top1_agreement", "drift_cosine"):
        if m in ok and ok[m].notna().any():
            return m
    return "drift_cosine"


def point_title(batch, shape: str) -> str:
    """A (batch, shape) point as people read it: 'batch 8', 'batch 8, seq128'."""
    return f"batch {int(batch)}" + (f", {shape}" if shape not in ("", "-") else "")


def best_under_budgets(passing: pd.DataFrame, metric: str, reference: float | None) -> list[dict]:
    """Per (batch, shape) point and accuracy budget, the fastest variant whose ``metric`` is within the budget of
    the reference (or of the best variant at that point): a batch-1 deployment reads its own line."""
    out = []
    for (batch, _), ok in passing.groupby(["batch_size", "shape_sort"], sort=True):
        point = point_title(batch, ok["shape_label"].iloc[0])
        values = ok[metric].dropna() if metric in ok else pd.Series(dtype=float)
        if values.empty:
            continue
        top = reference if reference is not None else values.max()
        lines: list[dict] = []
        for drop in ACCURACY_BUDGETS:
            fits = ok[ok[metric] >= top - drop - 1e-12]
            if fits.empty:
                line = {"point": point, "budget": drop, "budget_to": drop, "variant": None}
            else:
                r = fits.sort_values("latency_ms_p50").iloc[0]
                line = {"point": point, "budget": drop, "budget_to": drop, "variant": r["variant_id"],
                        "latency_ms_p50": r["latency_ms_p50"], "value": r[metric]}
            if lines and lines[-1]["variant"] == line["variant"]:
                lines[-1]["budget_to"] = drop  # a looser budget that picks the same variant: one line, a range
            else:
                lines.append(line)
        out += lines
    return out


def reference_of(run: dict) -> dict:
    """What names the run's reference: its reference.json, or (runs without one) its first row."""
    rows = run["df"].to_dict("records") if len(run["df"]) else []
    return run["ref"] or (rows[0] if rows else {})


def verdicts(df: pd.DataFrame, run: dict) -> tuple[dict[tuple[str, str], bool], dict[str, list[str]]]:
    """(variant, metric column) → within budget, as ``optbench check`` decides it; and per variant the
    reasons it fails (every output and part, collapsed ones included)."""
    from optbench.check import metric_of, output_budgets

    rows = df.to_dict("records")
    noise = noise_floor(rows, reference_of(run))
    per_output = output_budgets(run["spec"])
    out: dict[tuple[str, str], bool] = {}
    failing: dict[str, list[str]] = {}
    for row in rows:
        if row["status"] != "ok":
            continue
        budget = budget_for(row, run["spec"].get("budgets") or {}, {})
        for res in check_accuracy(row, budget, noise, run["ref"].get("reference_task_accuracy"), per_output):
            key = res.check.rsplit(".", 1)[-1]
            target = metric_of(key)
            column = "task_accuracy" if target and target[0] == "accuracy_drop" else (target[0] if target else key)
            vkey = (row["variant_id"], column)
            out[vkey] = out.get(vkey, True) and res.passed
            if not res.passed:
                failing.setdefault(row["variant_id"], []).append(res.message)
    return out, failing


def generated_at() -> str:
    return clock.stamp()
