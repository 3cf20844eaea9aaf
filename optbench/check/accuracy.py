"""A row's outputs (and parts) against their accuracy budgets: drift, task metrics, the collapse guard, each
failure naming the setting that would have passed."""

from __future__ import annotations

import math

from optbench.check.budgets import metric_of, passing_setting, selected_budgets
from optbench.check.results import Result


def check_accuracy(row: dict, budget: dict, noise: float | None, ref_accuracy: float | None,
                   per_output: dict | None = None, overrides: dict | None = None) -> list[Result]:
    """Every output (and part) against its budget; a collapsed output fails whatever its metrics say.
    Rows of runs made before per-output judging carry flat columns only, checked as one output."""
    outputs = row.get("outputs")
    if not isinstance(outputs, dict) or not outputs:
        return _check_values(row["variant_id"], dict(row), budget, noise, ref_accuracy, "")
    out: list[Result] = []
    multi = len(outputs) > 1  # one output: checks keep the plain budget key as their name
    for label, metrics in outputs.items():
        if metrics.get("collapsed"):  # one line says it; its other metrics mean nothing
            out.append(Result(row["variant_id"], f"{label}.collapsed", False, f"output '{label}' {metrics['collapsed']}"))
            continue
        own = dict(budget)
        for layer in ((per_output or {}).get(label, {}), overrides or {}):
            own.update(selected_budgets(row, layer, f"outputs.{label}.budgets"))
        out += _check_values(row["variant_id"], dict(metrics), own, noise, ref_accuracy, label if multi else "")
    return out


def _check_values(vid: str, values: dict, budget: dict, noise: float | None, ref_accuracy: float | None,
                  label: str) -> list[Result]:
    out = []
    if ref_accuracy is not None and values.get("task_accuracy") is not None:
        values["accuracy_drop"] = ref_accuracy - values["task_accuracy"]
    where = f"output '{label}': " if label else ""
    for key, limit in budget.items():
        target = metric_of(key)
        if target is None:
            continue
        column, direction = target
        value = values.get(column)
        if value is None:
            continue
        effective = limit
        note = ""
        if key == "rel_l2_max" and noise is not None and "rel_l2_noise_x" in budget:
            effective = max(limit, budget["rel_l2_noise_x"] * noise)
            note = f" (max of {limit:g} and {budget['rel_l2_noise_x']:g}x noise floor {noise:.3g})"
        value = float(value)
        if math.isnan(value):
            out.append(Result(vid, f"{label}.{key}" if label else key, False, f"{where}{column} is NaN"))
            continue
        ok = value <= effective if direction == "max" else value >= effective
        msg = "" if ok else (
            f"{where}{column} = {value:.6g} {'>' if direction == 'max' else '<'} budget {effective:.6g}{note}; "
            f"would pass with {key}={passing_setting(value, direction)}")
        out.append(Result(vid, f"{label}.{key}" if label else key, ok, msg, margin=(
            effective - value if direction == "max" else value - effective) / (abs(effective) or 1.0)))
    return out
