"""The fp32 noise floor and conversion defects: fp32 rows on a second-opinion runtime measure how far fp32
arithmetic alone moves the outputs; a row or a conversion step farther than that is a conversion defect."""

from __future__ import annotations

from optbench.backends import backend_name_of, reference_backend_of, second_opinion_backends
from optbench.check.budgets import NOISE_FLOOR_MAX
from optbench.check.results import Result


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
