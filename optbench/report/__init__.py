"""The run report: one self-contained HTML file (inline CSS, plots as data-URI SVG), plus Markdown and CSV.

The names below load on first use, so that the command line builds its parser without pandas."""

from __future__ import annotations

from typing import Any

_BUILD = ("ACCURACY_BUDGETS", "accuracy_metric", "best_under_budgets", "enrich", "generated_at", "load_run",
          "point_title", "verdicts", "write_report")
__all__ = list(_BUILD)


def __getattr__(name: str) -> Any:
    if name in _BUILD:
        from optbench.report import build

        return getattr(build, name)
    raise AttributeError(f"module 'optbench.report' has no attribute '{name}'")
