"""What commands print besides their own lines: text tables of rows, and progress on stderr (stdout keeps the
command's output: a table, JSON)."""

from __future__ import annotations

import sys


def table(rows: list[dict], columns: list[str]) -> str:
    cells = [[cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "nan"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.0f}"
    if isinstance(v, dict):
        return "x".join(f"{k}{x}" for k, x in v.items()) or "-"
    return str(v)



def progress(text: str) -> None:
    """A step of a wait longer than a moment, on stderr."""
    print(text, file=sys.stderr, flush=True)
