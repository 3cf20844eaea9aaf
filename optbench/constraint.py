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
    return Constraint(current_name(m.group(1)), m.group(2), value)  # a former column name still reads
