"""A row's serving measurement against its bounds: each server run's p99, the serving budget keys, the soak's
errors (judged on the engine the spec deploys)."""

from __future__ import annotations

from optbench.check.budgets import SERVING_KEYS, passing_setting
from optbench.check.results import Result
from optbench.spec.defaults import config_defaults


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
                                                      f"budget {limit:g}; would pass with {key}={passing_setting(value, direction)}"))
    if (s.get("soak") or {}).get("errors"):
        out.append(Result(vid, "soak.errors", False, f"{s['soak']['errors']} request(s) failed in the soak; the first: "
                                                     f"{s['soak']['first_error']}"))
    return out
