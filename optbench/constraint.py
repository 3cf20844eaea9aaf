"""A deployment constraint on a row column (``constraints:`` in the spec, ``--constraint``): ``COLUMN OP NUMBER`` in
the column's unit, e.g. ``latency_ms_p99 <= 5``. Parsed here; :func:`optbench.check.check_constraints` decides."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from optbench.columns import unknown_column
from optbench.errors import OptbenchError, strict_float
from optbench.row import current_name
from optbench.spec.base import CONSTRAINT


@dataclass(frozen=True)
class Constraint:
    column: str
    op: str
    value: float

    def compare(self, value) -> bool:
        """The comparison the constraint names; false for anything but a number (check decides with it)."""
        if not isinstance(value, (int, float)) or isinstance(value, bool) or math.isnan(value):
            return False
        return {"<=": operator.le, "<": operator.lt, ">=": operator.ge, ">": operator.gt}[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.column} {self.op} {self.value:g}"


def parse_constraint(text: str, where: str = "--constraint") -> Constraint:
    m = CONSTRAINT.match(text)
    if not m:
        raise OptbenchError(f"{where}: a constraint is 'COLUMN OP NUMBER' with OP one of <=, <, >=, >, "
                            f"e.g. 'latency_ms_p99 <= 5'", found=repr(text))
    try:
        value = strict_float(m.group(3))
    except ValueError:
        raise OptbenchError(f"{where}: expected a number after {m.group(2)}", found=repr(text)) from None
    if not math.isfinite(value):
        raise OptbenchError(f"{where}: expected a finite number", found=repr(text))
    column = current_name(m.group(1))  # a former column name still reads
    if why := unknown_column(column):
        raise OptbenchError(f"{where}: '{text.strip()}': {why}",
                            expected=None if why.endswith("?") else f"a numeric row column: {_some_columns()}")
    return Constraint(column, m.group(2), value)


def _some_columns() -> str:
    return ", ".join(["latency_ms_p50", "latency_ms_p99", "throughput_items_s", "drift_rel_l2", "task_accuracy",
                      "gpu_peak_bytes", "model_bytes", "serving_peak_qps"]) + ", ... (docs/columns.md)"
