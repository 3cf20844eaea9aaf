"""Deployment constraints (:mod:`optbench.constraint`, e.g. ``latency_ms_p99 <= 5``) decided on a measured row."""

from __future__ import annotations

from optbench.check.results import Result


def check_constraints(row: dict, constraints: list) -> list[Result]:
    """Deployment constraints (optbench.constraint) on a measured row; a column without a number fails its own."""
    return [Result(row["variant_id"], f"constraint {c}", ok, "" if ok else f"{c.column} is {row.get(c.column)!r}, "
                   f"not {c}") for c in constraints for ok in [c.compare(row.get(c.column))]]
