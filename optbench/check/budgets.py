"""Budget keys and the budget a row is held to: the defaults of its precision and transform (budgets.yaml), then the
spec's ``budgets:``, then ``--budget`` overrides, each layer by selector (``*``, a precision, a variant-id glob)."""

from __future__ import annotations

import fnmatch
import functools
import math

from optbench.errors import OptbenchError, strict_float
from optbench.spec.defaults import config_defaults

# budget key → (row column, direction); "max": value must be <= budget. Besides these, every task metric
# (optbench.measure.tasks.TASK_METRICS) and user metric (x_<name>) is a budget key as <column>_min / <column>_max.
METRICS = {
    "rel_l2_max": ("drift_rel_l2", "max"),
    "max_abs_max": ("drift_max_abs", "max"),
    "cosine_min": ("drift_cosine", "min"),
    "top1_min": ("top1_agreement", "min"),
    "accuracy_drop_max": ("accuracy_drop", "max"),
}


@functools.cache
def known_keys() -> frozenset[str]:
    """Every budget key: the drift ones above, the noise keys, <task metric>_min / _max (read on first use: the
    task registry imports numpy, which building the command line does not need)."""
    from optbench.measure.tasks import TASK_METRICS

    tasks = {f"{m}_{d}" for ms in TASK_METRICS.values() for m in ms for d in ("min", "max")}
    return frozenset(set(METRICS) | {"rel_l2_noise_x", "noise_floor_max"} | tasks | SERVING_KEYS)


# budget keys over a row's serving dict (see check_serving), judged on the engine the spec deploys
SERVING_KEYS = frozenset({"serving_peak_qps_min", "energy_j_per_item_max", "soak_rss_mb_per_min_max",
                          "soak_p99_drift_max"})
NOISE_FLOOR_MAX = 1e-3  # fp32 on a second runtime farther than this from the torch reference is a conversion defect


def metric_of(key: str) -> tuple[str, str] | None:
    """The (column, direction) a budget key bounds, or None for modifiers such as rel_l2_noise_x."""
    if key in METRICS:
        return METRICS[key]
    if key.endswith(("_min", "_max")) and (key in known_keys() or key.startswith("x_")):
        return key[:-4], key[-3:]
    return None


def parse_overrides(items: list[str]) -> dict[str, dict[str, float]]:
    """``[SELECTOR.]KEY=VALUE`` → {selector or '*': {key: value}}."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        if "=" not in item:
            raise OptbenchError(f"--budget takes [SELECTOR.]KEY=VALUE, found {item!r}")
        lhs, value = item.split("=", 1)
        selector, _, key = lhs.rpartition(".")
        check_key(key, "--budget")
        try:
            number = strict_float(value)
        except ValueError:
            raise OptbenchError(f"--budget {lhs}: expected a number, found {value!r}") from None
        if not math.isfinite(number):
            raise OptbenchError(f"--budget {lhs}: expected a finite number, found {value!r}")
        out.setdefault(selector or "*", {})[key] = number
    return out


def check_key(key: str, where: str) -> None:
    """An unknown budget key is a usage error naming ``where`` it was set, with the nearest known key."""
    if key not in known_keys() and not (key.startswith("x_") and key.endswith(("_min", "_max"))):
        import difflib

        hint = difflib.get_close_matches(key, sorted(known_keys()), n=1)
        raise OptbenchError(f"{where}: unknown budget key '{key}'" + (f"; did you mean '{hint[0]}'?" if hint else ""),
                            expected=f"one of {sorted(known_keys())}", found=repr(key))


def budget_for(row: dict, spec_budgets: dict, overrides: dict) -> dict[str, float]:
    defaults = config_defaults("budgets")
    budget: dict[str, float] = dict(defaults.get(row["precision"], {}))
    if row.get("transform") not in (None, "none"):
        budget = {k: v for k, v in budget.items() if k == "accuracy_drop_max"} | defaults.get("transformed", {})
        if row["precision"] == "int8":
            budget["accuracy_drop_max"] = defaults["transformed"]["accuracy_drop_max"] + \
                defaults["int8"].get("accuracy_drop_max", 0)
    for layer in (spec_budgets, overrides):
        budget.update(selected_budgets(row, layer, "budgets"))
    return budget


def output_budgets(spec: dict) -> dict[str, dict]:
    """Budgets the spec's ``outputs:`` section sets per output and part (label → {selector: {key: value}})."""
    out: dict[str, dict] = {}
    for o in spec.get("outputs") or []:
        if o.get("budgets"):
            out[o["name"]] = o["budgets"]
        for p in o.get("parts") or []:
            if p.get("budgets"):
                out[p["name"]] = p["budgets"]
    return out


def selected_budgets(row: dict, layer: dict, where: str) -> dict:
    """The budgets of one layer ({selector: {key: value}}) that apply to ``row``, their keys checked."""
    merged: dict = {}
    for selector, values in layer.items():
        if selector in ("*", row["precision"]) or fnmatch.fnmatch(row["variant_id"], selector):
            for k in values:
                check_key(k, f"{where}.{selector}")
            merged.update(values)
    return merged


def passing_setting(value: float, direction: str) -> str:
    """The loosest round setting that the value meets."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else "n/a"
    exp = math.floor(math.log10(abs(value))) - 1
    step = 10.0 ** exp
    bound = math.ceil(value / step) * step if direction == "max" else math.floor(value / step) * step
    return f"{bound:.{max(0, -exp)}f}" if exp < 0 else f"{bound:g}"
