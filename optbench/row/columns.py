"""The column catalogue, read from the parts' fields: each column's part, type, unit, meaning, former names and the
schema version that introduced it; a former name read as today's."""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

from optbench.row.parts import PARTS


@dataclass(frozen=True)
class Column:
    name: str
    part: str
    type: str
    unit: str | None
    doc: str
    old: tuple[str, ...]
    since: int


def _type_name(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    base = args[0] if args else annotation
    return {int: "integer", float: "number", str: "string", bool: "boolean", list: "array", dict: "object"}.get(
        typing.get_origin(base) or base, "any")


def _columns() -> list[Column]:
    out = []
    for part, cls in PARTS.items():
        for name, f in cls.model_fields.items():
            m = f.json_schema_extra
            out.append(Column(name, part, _type_name(f.annotation), m["unit"], f.description, tuple(m["old"]),
                              m["since"]))
    out.append(Column("warnings", "warnings", "array", None, "Typed warnings: [{code, message}] (codes in "
                      "optbench/row/warning_codes.py WARNING_CODES).", (), 1))
    return out


COLUMNS: list[Column] = _columns()
BY_NAME: dict[str, Column] = {c.name: c for c in COLUMNS}
RENAMED: dict[str, str] = {old: c.name for c in COLUMNS for old in c.old}
INTEGER = frozenset(c.name for c in COLUMNS if c.type == "integer")


def current_name(name: str) -> str:
    """A column's name today (budgets, constraints and old runs may use the name it had before)."""
    return RENAMED.get(name, name)
