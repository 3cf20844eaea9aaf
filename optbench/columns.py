"""Which row columns a constraint can bound: the row's numeric columns (docs/columns.md) and a custom task's metrics
(``x_<name>``), checked when a spec or a flag names one, before a sweep or a search runs."""

from __future__ import annotations


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
