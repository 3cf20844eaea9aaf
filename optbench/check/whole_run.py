"""A run directory's whole check: every planned variant's status, its accuracy, conversion, serving budgets, and
its latency against a baseline run."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from optbench.backends import reference_backend, reference_backend_of, second_opinion_backends
from optbench.check.accuracy import check_accuracy
from optbench.check.budgets import NOISE_FLOOR_MAX, budget_for, output_budgets
from optbench.check.conversion import blame, conversion_defects, conversion_steps, noise_floor
from optbench.check.latency import check_latency, env_differences, retimer
from optbench.check.results import Report, Result
from optbench.check.serving import check_serving
from optbench.errors import RunDirError
from optbench.spec.defaults import config_defaults
from optbench.store import schema_note


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
