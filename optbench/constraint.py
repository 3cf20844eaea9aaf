"""A deployment constraint on a row column (``constraints:`` in the spec, ``--constraint``): ``COLUMN OP NUMBER`` in
the column's unit, e.g. ``latency_ms_p99 <= 5``. Parsed here; :func:`optbench.check.check_constraints` decides."""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

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


def numeric_columns() -> list[str]:
    """The row columns that hold numbers (docs/columns.md); a custom task's metrics are x_<name>."""
    from optbench.row import COLUMNS

    return [c.name for c in COLUMNS if c.type in ("number", "integer")]


def unknown_column(column: str) -> str | None:
    """Why no row can hold ``column`` as a number (None: some can), checked before a sweep or search runs: a
    constraint on a column no row has fails every variant, and only after all of them ran."""
    if column in numeric_columns() or column.startswith("x_"):
        return None
    from optbench.row import BY_NAME

    if column in BY_NAME:
        return f"column '{column}' holds {'text' if BY_NAME[column].type == 'string' else BY_NAME[column].type}, not numbers"
    import difflib

    near = difflib.get_close_matches(column, numeric_columns(), n=1)
    return f"the rows have no column '{column}'" + (f"; did you mean '{near[0]}'?" if near else "")


def _some_columns() -> str:
    return ", ".join(["latency_ms_p50", "latency_ms_p99", "throughput_items_s", "drift_rel_l2", "task_accuracy",
                      "gpu_peak_bytes", "model_bytes", "serving_peak_qps"]) + ", ... (docs/columns.md)"
