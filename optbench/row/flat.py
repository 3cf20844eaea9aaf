"""The whole row (:class:`Row`: its parts, warnings and a custom task's extra columns) and the row as written, flat
(``results.jsonl``, every column present, ``null`` where the variant has no value: one missing-value convention),
read back from any schema version: columns renamed since are renamed, warnings written as text get a code, and
:meth:`Row.lacks` says which columns the older schema did not record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from optbench.row.columns import BY_NAME, COLUMNS, INTEGER, current_name
from optbench.row.parts import (
    PARTS,
    Accuracy,
    ArtifactFacts,
    Failure,
    Identity,
    Memory,
    Search,
    Serving,
    Timing,
)
from optbench.row.warning_codes import as_warning, warning


@dataclass
class Row:
    identity: Identity = field(default_factory=Identity)
    timing: Timing = field(default_factory=Timing)
    memory: Memory = field(default_factory=Memory)
    accuracy: Accuracy = field(default_factory=Accuracy)
    serving: Serving = field(default_factory=Serving)
    artifact: ArtifactFacts = field(default_factory=ArtifactFacts)
    failure: Failure = field(default_factory=Failure)
    search: Search = field(default_factory=Search)
    warnings: list[dict[str, str]] = field(default_factory=list)
    # columns no part declares, kept as written: a custom task hook's own metrics
    extra: dict[str, Any] = field(default_factory=dict)
    # the columns the row was read with (today's names), for :meth:`lacks`
    present: set[str] = field(default_factory=set, repr=False, compare=False)

    def get(self, name: str, default: Any = None) -> Any:
        name = current_name(name)
        if name == "warnings":
            return self.warnings
        if name in BY_NAME:
            value = getattr(getattr(self, BY_NAME[name].part), name)
            return default if value is None else value
        return self.extra.get(name, default)

    def warn(self, code: str, message: str) -> None:
        self.warnings.append(warning(code, message))

    def to_dict(self) -> dict[str, Any]:
        """The flat row: every column (null where missing), then the extra ones."""
        from optbench.json_copy import plain_fields
        out: dict[str, Any] = {}
        for part in PARTS:
            out.update(plain_fields(getattr(self, part)))  # asdict's copies, fast for long sample lists
        out["warnings"] = list(self.warnings)
        out.update(self.extra)
        return out

    def given(self) -> dict[str, Any]:
        """The columns given to this row's parts, its warnings and extra columns, flat: what a worker measured (the
        sweep adds the identity columns and normalizes, see :func:`normalize`)."""
        out: dict[str, Any] = {}
        for part in PARTS:
            out.update(getattr(self, part).columns())
        if self.warnings:
            out["warnings"] = list(self.warnings)
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """A row of any schema version (renamed columns renamed, text warnings given codes), as written: values are
        not validated again, so rows of older writers still load; a column no part declares goes to ``extra``."""
        row = cls()
        values: dict[str, dict[str, Any]] = {part: {} for part in PARTS}
        for name, value in data.items():
            if name == "cached":  # listed once, never written
                continue
            name = current_name(name)
            row.present.add(name)
            if name == "warnings":
                row.warnings = [as_warning(w) for w in value or []]
            elif name in BY_NAME:
                values[BY_NAME[name].part][name] = _coerce(name, value)
            else:
                row.extra[name] = value
        for part, given in values.items():
            setattr(row, part, PARTS[part].model_construct(**given))
        if row.identity.schema_version is None:
            row.identity.schema_version = 1
        return row

    def lacks(self) -> list[str]:
        """Columns the schema version this row was written with did not record."""
        v = self.identity.schema_version or 1
        return [c.name for c in COLUMNS if c.since > v and c.name not in self.present]


def _coerce(name: str, value: Any) -> Any:
    """Integer columns hold integers (a float 3.0 from an older writer, numpy integers); bools stay bools."""
    if name in INTEGER and value is not None and not isinstance(value, bool):
        try:
            as_int = int(value)
        except (TypeError, ValueError):
            return value
        return as_int if as_int == value else value
    return value


def normalize(data: dict[str, Any]) -> dict[str, Any]:
    """A row of any schema version as today's flat dict."""
    return Row.from_dict(data).to_dict()
