"""Pass or fail: accuracy budgets, failed variants, and the latency gate against a baseline run.

Only this module decides. ``optbench check`` exits 0 when everything holds, 1 when anything is
violated, 2 for a usage or spec error. Every violation says the variant, the metric, the
value, the budget, and the setting that would have passed.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from optbench.backends import backend_name_of, reference_backend, reference_backend_of, second_opinion_backends
from optbench.errors import OptbenchError, RunDirError, strict_float
from optbench.spec.defaults import config_defaults
from optbench.store import schema_note

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


@dataclass
class Result:
    variant: str
    check: str
    passed: bool
    message: str = ""
    warning: bool = False
    verdict: str | None = None  # latency checks: faster | slower | same | inconclusive
    margin: float | None = None  # budget checks: how far inside (> 0) or outside (< 0) the budget, relative to it
    # a paired latency verdict (both sides re-timed, see optbench.run.retime): the ratio's interval and every pair
    interval: tuple[float, float] | None = None
    pairs: tuple = ()


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[Result]:
        return [r for r in self.results if not r.passed and not r.warning]

    @property
    def warnings(self) -> list[Result]:
        return [r for r in self.results if not r.passed and r.warning]

    @property
    def latency_counts(self) -> dict[str, int]:
        words = [r.verdict for r in self.results if r.verdict]
        return {w: words.count(w) for w in ("same", "faster", "slower", "inconclusive")}

    @property
    def exit_code(self) -> int:
        return 1 if self.violations else 0


# ---------------------------------------------------------------- budgets
def parse_overrides(items: list[str]) -> dict[str, dict[str, float]]:
    """``[SELECTOR.]KEY=VALUE`` → {selector or '*': {key: value}}."""
    out: dict[str, dict[str, float]] = {}
    for item in items:
        if "=" not in item:
            raise OptbenchError(f"--budget takes [SELECTOR.]KEY=VALUE, found {item!r}")
        lhs, value = item.split("=", 1)
        selector, _, key = lhs.rpartition(".")
        _known(key, "--budget")
        try:
            number = strict_float(value)
        except ValueError:
            raise OptbenchError(f"--budget {lhs}: expected a number, found {value!r}") from None
        if not math.isfinite(number):
            raise OptbenchError(f"--budget {lhs}: expected a finite number, found {value!r}")
        out.setdefault(selector or "*", {})[key] = number
    return out


def _known(key: str, where: str) -> None:
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
        budget.update(_selected(row, layer, "budgets"))
    return budget


def second_opinions(rows: list[dict], reference: dict | None = None) -> list[dict]:
    """fp32 rows of the untransformed model on a second-opinion runtime (ONNX Runtime): the same fp32 math on a
    second runtime. None where that runtime computed the reference itself (an ONNX file): those rows are the
    reference, not a second opinion. ``reference``: a row (or reference.json) naming the reference."""
    opinions = second_opinion_backends()
    if reference_backend_of(reference or {}) in opinions:
        return []
    return [r for r in rows if r.get("status") == "ok" and r["precision"] == "fp32" and r.get("transform") == "none"
            and backend_name_of(r) in opinions and r.get("drift_rel_l2") is not None]


def noise_floor(rows: list[dict], reference: dict | None = None, limit: float = NOISE_FLOOR_MAX) -> float | None:
    """drift_rel_l2 of fp32 ONNX Runtime vs the fp32 torch reference on the same inputs, from the rows that fp32
    can explain (at most ``limit``): a broken conversion fails as such and never widens the budgets."""
    vals = [r["drift_rel_l2"] for r in second_opinions(rows, reference) if r["drift_rel_l2"] <= limit]
    return max(vals) if vals else None


def conversion_defects(rows: list[dict], reference: dict | None, limits) -> list[Result]:
    """Second-opinion rows farther from the reference than fp32 can explain: each fails, naming the limit (rows that
    carry their conversion chain fail by the step instead: :func:`conversion_steps`)."""
    out = []
    for r in second_opinions(rows, reference):
        limit = limits(r)
        if r["drift_rel_l2"] > limit and not r.get("conversion"):
            out.append(Result(r["variant_id"], "conversion", False,
                              f"fp32 on {r['backend']} drifts rel. L2 {r['drift_rel_l2']:.3g} from the reference "
                              f"({r.get('reference') or 'torch'}), more than fp32 arithmetic explains (noise_floor_max "
                              f"{limit:g}): a conversion defect; it is not used as the noise floor"))
    return out


def conversion_steps(row: dict, limit: float) -> list[Result]:
    """Each step of a row's conversion chain that keeps fp32 (a format conversion such as tensorflow → onnx, or a
    runtime at fp32) and adds more drift than fp32 arithmetic explains fails, naming the step and its tool: a
    conversion defect, whatever the total drift's budget is."""
    out = []
    for step in row.get("conversion") or []:
        drift = step.get("drift_rel_l2")
        if drift is None or step.get("precision", "fp32") != "fp32" or step["step"].startswith("transform"):
            continue
        if not drift <= limit:  # NaN fails too
            out.append(Result(row["variant_id"], "conversion", False,
                              f"step '{step['step']}' ({_tool(step)}) added rel. L2 {drift:.3g} against the step before "
                              f"it, more than fp32 arithmetic explains (noise_floor_max {limit:g}): a conversion defect"
                              + (f" (worst output '{step['worst_output']}')" if step.get("worst_output") else "")))
    return out


def _tool(step: dict) -> str:
    parts = [step.get("tool"), step.get("version"), f"opset {step['opset']}" if step.get("opset") else None]
    return " ".join(str(p) for p in parts[:2] if p) + (f", {parts[2]}" if parts[2] else "")


def blame(row: dict) -> str:
    """The conversion step that added the most drift, for a failed accuracy check's message ('' without a chain)."""
    steps = [s for s in row.get("conversion") or [] if s.get("drift_rel_l2") is not None]
    if not steps:
        return ""
    worst = max(steps, key=lambda s: s["drift_rel_l2"] if s["drift_rel_l2"] == s["drift_rel_l2"] else float("inf"))
    return f" [largest step: '{worst['step']}' ({_tool(worst)}) added rel. L2 {worst['drift_rel_l2']:.3g}]"


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
            own.update(_selected(row, layer, f"outputs.{label}.budgets"))
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
            f"would pass with {key}={_passing(value, direction)}")
        out.append(Result(vid, f"{label}.{key}" if label else key, ok, msg, margin=(
            effective - value if direction == "max" else value - effective) / (abs(effective) or 1.0)))
    return out


def check_constraints(row: dict, constraints: list) -> list[Result]:
    """Deployment constraints (optbench.constraint) on a measured row; a column without a number fails its own."""
    return [Result(row["variant_id"], f"constraint {c}", ok, "" if ok else f"{c.column} is {row.get(c.column)!r}, "
                   f"not {c}") for c in constraints for ok in [c.compare(row.get(c.column))]]


def _selected(row: dict, layer: dict, where: str) -> dict:
    merged: dict = {}
    for selector, values in layer.items():
        if selector in ("*", row["precision"]) or fnmatch.fnmatch(row["variant_id"], selector):
            for k in values:
                _known(k, f"{where}.{selector}")
            merged.update(values)
    return merged


def _passing(value: float, direction: str) -> str:
    """The loosest round setting that the value meets."""
    if value == 0 or not math.isfinite(value):
        return "0" if value == 0 else "n/a"
    exp = math.floor(math.log10(abs(value))) - 1
    step = 10.0 ** exp
    bound = math.ceil(value / step) * step if direction == "max" else math.floor(value / step) * step
    return f"{bound:.{max(0, -exp)}f}" if exp < 0 else f"{bound:g}"


# ---------------------------------------------------------------- serving
def check_serving(row: dict, budget: dict) -> list[Result]:
    """A row's serving dict: every server run of the deployed engine within its p99 bound, and the serving budget
    keys (over the ``serving:`` defaults of budgets.yaml). A failed serving is a violation."""
    s, vid = row.get("serving"), row["variant_id"]
    if not isinstance(s, dict):
        return []
    if s.get("error"):
        return [Result(vid, "serving", False, f"serving failed: {s['error']}")]
    judged = (s.get("batching") or {}).get("judged", "none")
    limits = {**config_defaults("budgets").get("serving", {}), **budget}
    out = []
    for r in s.get("runs") or []:
        if r["scenario"] == "server" and r["batching"] == judged:
            ok = r["p99_ms"] is not None and r["p99_ms"] <= r["p99_bound_ms"]
            p99 = "no p99 (no query completed)" if r["p99_ms"] is None else f"p99 {r['p99_ms']:.4g} ms"
            out.append(Result(vid, f"serving.server@{r['target_qps']:g}qps", ok, "" if ok else
                              f"{p99} at {r['target_qps']:g} QPS ({judged} batching), bound {r['p99_bound_ms']:g} ms "
                              f"(LoadGen: {r['validity']})"))
    from optbench.measure.serving.figures import headline

    figures = headline(s)
    for key in sorted(SERVING_KEYS & set(limits)):
        value, limit, direction = figures[key[:-4]], limits[key], key[-3:]
        if value is None:  # a budget the spec or --budget set on a figure the row lacks warns; a default is moot
            why = (s.get("energy") or {}).get("unavailable") if key.startswith("energy") else "not measured"
            out += [Result(vid, key, False, f"{key[:-4]}: {why}", warning=True)] if key in budget else []
            continue
        ok = value <= limit if direction == "max" else value >= limit
        out.append(Result(vid, key, ok, "" if ok else f"{key[:-4]} = {value:.6g} {'>' if direction == 'max' else '<'} "
                                                      f"budget {limit:g}; would pass with {key}={_passing(value, direction)}"))
    if (s.get("soak") or {}).get("errors"):
        out.append(Result(vid, "soak.errors", False, f"{s['soak']['errors']} request(s) failed in the soak; the first: "
                                                     f"{s['soak']['first_error']}"))
    return out


# ---------------------------------------------------------------- latency gate
def env_differences(a: dict, b: dict) -> list[str]:
    diffs = []
    for key in ("cpu", "python"):
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: {b.get(key)} → {a.get(key)}")
    ga = [g.get("name") for g in a.get("gpus", [])]
    gb = [g.get("name") for g in b.get("gpus", [])]
    if ga != gb:
        diffs.append(f"gpus: {gb} → {ga}")
    la, lb = a.get("libraries", {}), b.get("libraries", {})
    for lib in sorted(set(la) | set(lb)):
        if la.get(lib) != lb.get(lib):
            diffs.append(f"{lib}: {lb.get(lib)} → {la.get(lib)}")
    # every backend's runtime, where both runs recorded them (runs before this record only ``libraries``)
    ra, rb = a.get("runtimes"), b.get("runtimes")
    if ra is not None and rb is not None:
        for lib in sorted((set(ra) | set(rb)) - set(la) - set(lb)):
            if ra.get(lib) != rb.get(lib):
                diffs.append(f"{lib}: {rb.get(lib)} → {ra.get(lib)}")
    return diffs


def check_latency(rows: dict[str, dict], base: dict[str, dict], effect: float, warn_only: bool,
                  strict: bool = False, settle=None) -> list[Result]:
    """One latency verdict per variant in both runs (see :mod:`optbench.measure.verdict`): slower fails (a
    warning where the baseline ran elsewhere), inconclusive warns (fails under ``strict``). ``settle(row, base_row,
    verdict)`` may replace a verdict by a paired one (:class:`optbench.run.retime.Retimer`)."""
    from optbench.measure.verdict import verdict_for

    out = []
    for vid, row in rows.items():
        old = base.get(vid)
        if row.get("status") != "ok" or not old or old.get("status") != "ok":
            continue
        v = verdict_for(row, old, effect)
        if settle is not None:
            v = settle(row, old, v)
        passed = v.word in ("same", "faster")
        warning = (v.word == "slower" and warn_only) or (v.word == "inconclusive" and not strict)
        message = v.line + (f"; would pass with --min-effect {v.ratio - 1:.2f}"
                            if v.word == "slower" and v.ratio is not None else "")
        out.append(Result(vid, "latency", passed, message, warning=warning and not passed, verdict=v.word,
                          interval=v.interval, pairs=v.pairs))
    return out


def retimer(run_dir: Path, baseline: Path, effect: float, retime: str, pairs: int | None, say):
    """What settles the latency verdicts (see :class:`optbench.run.retime.Retimer`), or None for ``retime`` off."""
    if retime == "off":
        return None
    from optbench.run.retime import Retimer

    options = {"pairs": pairs} if pairs else {}
    return Retimer(run_dir, baseline, effect, always=retime == "always", say=say or (lambda s: None), **options)


# ---------------------------------------------------------------- the whole check
def _load_run(run_dir: Path) -> tuple[dict[str, dict], dict, dict]:
    from optbench.store import final_rows

    run_dir = Path(run_dir)
    if not (run_dir / "results.jsonl").exists():
        raise RunDirError(f"{run_dir} holds no results.jsonl; is it a run directory?")
    rows = final_rows(run_dir)
    env = json.loads((run_dir / "env.json").read_text()) if (run_dir / "env.json").exists() else {}
    ref = json.loads((run_dir / "reference.json").read_text()) if (run_dir / "reference.json").exists() else {}
    return rows, env, ref


def check_run(run_dir: Path, baseline: Path | None = None, overrides: dict | None = None,
              strict_env: bool = False, min_effect: float | None = None, strict: bool = False,
              retime: str = "off", pairs: int | None = None, say=None) -> Report:
    """The run's checks, and its latency against ``baseline``; ``retime``: "inconclusive" settles inconclusive
    latency verdicts by paired re-timing of both runs' artifacts, "always" decides every one so, "off" never."""
    import yaml

    rows, env, ref = _load_run(run_dir)
    if rows and not any(r.get("status") in ("ok", "failed", "timeout") for r in rows.values()):
        kinds = sorted({str(r.get("status")) for r in rows.values()})
        raise RunDirError(f"{run_dir}: nothing to check: its rows are {', '.join(kinds)}, none measured "
                          f"(`optbench build` measures nothing; check the directory of an `optbench run`)")
    spec_path = Path(run_dir) / "spec.yaml"
    spec = yaml.safe_load(spec_path.read_text()) if spec_path.exists() else {}
    spec_budgets, optional = spec.get("budgets") or {}, spec.get("optional") or []
    planned = json.loads((Path(run_dir) / "plan.json").read_text()) if (Path(run_dir) / "plan.json").exists() else list(rows)
    report = Report()
    def limit_of(row: dict) -> float:
        return float(budget_for(row, spec_budgets, overrides or {}).get("noise_floor_max", NOISE_FLOOR_MAX))

    opinion = min(second_opinion_backends())
    limit = limit_of({"precision": "fp32", "transform": "none", "variant_id": "", "backend": opinion})
    noise = noise_floor(list(rows.values()), ref, limit)
    report.results += conversion_defects(list(rows.values()), ref, limit_of)
    per_output = output_budgets(spec)
    if reference_backend_of(ref) in second_opinion_backends():
        report.notes.append(f"reference: {ref['reference']}")
    else:
        against = "torch" if reference_backend_of(ref) == reference_backend("torch").name else "the reference"
        report.notes.append(f"noise floor (fp32 {opinion} vs {against} rel_l2): {noise:.3g}" if noise is not None
                            else f"noise floor: no fp32 {opinion} row in this run")
    if note := schema_note(run_dir):
        report.notes.append(note)
    ok_rows = [r for r in rows.values() if r.get("status") == "ok"]
    if ok_rows and not any(isinstance(r.get("outputs"), dict) for r in ok_rows):
        report.notes.append("rows made before per-output judging: the first output only, no collapse guard")
    for vid in planned:
        is_optional = any(fnmatch.fnmatch(vid, p) for p in optional)
        row = rows.get(vid)
        if row is None:
            report.results.append(Result(vid, "status", is_optional, "variant has no result row (missing)"))
            continue
        if row["status"] in ("failed", "timeout"):
            err = (row.get("error") or "").splitlines()[0][:200] if row.get("error") else ""
            report.results.append(Result(vid, "status", is_optional, f"variant {row['status']}: {err}"))
            continue
        if row["status"] != "ok":
            continue
        report.results.append(Result(vid, "status", True))
        budget = budget_for(row, spec_budgets, overrides or {})
        checked = check_accuracy(row, budget, noise, ref.get("reference_task_accuracy"), per_output, overrides or {})
        for r in checked:
            r.message += blame(row) if not r.passed else ""
        report.results += checked + conversion_steps(row, limit_of(row))
        report.results += check_serving(row, budget)
    invalid = [r for row in ok_rows for r in (row.get("serving") or {}).get("runs") or [] if r["validity"] != "VALID"]
    if invalid:
        report.notes.append(f"{len(invalid)} serving run(s) INVALID by LoadGen's rules (duration, query count, early "
                            "stopping, latency bound): their reasons are in the rows' serving.runs")
    if baseline is not None:
        base_rows, base_env, _ = _load_run(baseline)
        diffs = env_differences(env, base_env)
        warn_only = bool(diffs) and not strict_env
        if diffs:
            report.notes.append("baseline ran elsewhere (" + "; ".join(diffs[:5]) + ")" +
                                (": latency differences are warnings" if warn_only else ""))
        effect = min_effect if min_effect is not None else config_defaults("budgets")["latency"]["min_effect"]
        report.results += check_latency(rows, base_rows, effect, warn_only, strict,
                                        retimer(Path(run_dir), Path(baseline), effect, retime, pairs, say))
        if any(r.get("busy") for r in rows.values() if r.get("status") == "ok"):
            report.notes.append("the machine was busy while some variants were timed: their latency is inconclusive")
        gone = sorted(set(base_rows) - set(rows))
        if gone:
            report.notes.append(f"{len(gone)} baseline variant(s) not in this run: {', '.join(gone[:5])}")
    return report
