"""The run report: one self-contained HTML file (inline CSS, plots as data-URI SVG), plus Markdown and CSV.

The names below load on first use, so that the command line builds its parser without pandas."""

from __future__ import annotations

from typing import Any

_BUILD = ("ACCURACY_BUDGETS", "accuracy_metric", "best_under_budgets", "enrich", "generated_at", "load_run",
          "point_title", "verdicts")
__all__ = [*_BUILD, "write_report"]


def __getattr__(name: str) -> Any:
    if name in _BUILD:
        from optbench.report import build

        return getattr(build, name)
    if name == "write_report":
        from optbench.report.render import write_report

        return write_report
    raise AttributeError(f"module 'optbench.report' has no attribute '{name}'")
