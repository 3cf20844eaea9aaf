"""Run directories and result rows.

Rows are appended to ``results.jsonl`` one at a time, flushed and fsynced, so a killed
sweep loses at most the row being written; a torn last line is dropped on read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from optbench.errors import RunDirError
from optbench.row import COLUMNS as ROW_COLUMNS
from optbench.row import INTEGER, SCHEMA_VERSION, normalize  # noqa: F401 (SCHEMA_VERSION: the writers' import)

RESULTS = "results.jsonl"
FINAL_STATUSES = ("ok", "built", "failed", "timeout", "skipped")
# every column of a row, in the order of its parts (see optbench/row/parts.py, where each is documented)
COLUMNS = [c.name for c in ROW_COLUMNS]


def row_json(row: dict[str, Any]) -> str:
    """A row as strict JSON: a NaN or infinite number (a NaN drift, a hook's metric) is written null and its
    place listed in ``nonfinite`` ([[["outputs", "y", "drift_rel_l2"], "nan"]]), which :func:`restore_row` puts
    back."""
    import math

    found: list[list] = []

    def clean(v: Any, where: list) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            found.append([where, "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")])
            return None
        if isinstance(v, dict):
            return {k: clean(x, [*where, k]) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x, [*where, i]) for i, x in enumerate(v)]
        if type(v).__module__ == "numpy" and hasattr(v, "item"):
            return clean(v.item(), where)
        return v

    row = clean(row, [])
    if found:
        row["nonfinite"] = found
    return json.dumps(row, default=_json_default, allow_nan=False)


def append_row(run_dir: Path, row: dict[str, Any]) -> None:
    """Append a row (normalised to today's typed row: every column, renamed columns renamed)."""
    line = row_json(normalize(row)) + "\n"
    with open(Path(run_dir) / RESULTS, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


MAX_ROW_BYTES = 256 << 20  # one row (its latency samples included): past this, not a row optbench wrote
MAX_FINAL_ROWS = 100_000    # variants a run directory may hold: past this, more than a report or a gate can show


def iter_rows(run_dir: Path, bad: Callable[[int, str], None] | None = None) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of each complete row, one at a time (memory does not grow with the file), as today's
    typed row has them whatever schema wrote them (see :meth:`optbench.row.Row.from_dict`); a torn (unterminated or
    unparsable) last line is dropped. A corrupt line elsewhere is an error, or ``bad(line, why)`` and skipped."""
    path = Path(run_dir) / RESULTS
    _regular(path)
    with open(path, "rb") as f:
        n = 0
        while line := f.readline(MAX_ROW_BYTES + 1):
            n += 1
            if len(line) > MAX_ROW_BYTES:
                raise RunDirError(f"{path}:{n}: a row longer than {MAX_ROW_BYTES >> 20} MiB; not a row optbench wrote")
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (ValueError, UnicodeDecodeError) as e:
                if not line.endswith(b"\n") or _at_end(f):  # torn tail from a kill mid-write
                    continue
                if bad is None:
                    raise RunDirError(f"{path}:{n}: corrupt result row") from None
                bad(n, f"corrupt result row ({str(e)[:80]})")
                continue
            try:
                if not isinstance(row, dict):
                    raise TypeError(f"a JSON {type(row).__name__}, not an object")
                yield n, normalize(restore_row(row))
            except (TypeError, ValueError, AttributeError) as e:  # JSON, but not a row (its warnings a number)
                if bad is None:
                    raise RunDirError(f"{path}:{n}: not a result row ({str(e)[:80]})") from None
                bad(n, f"not a result row ({str(e)[:80]})")


def _regular(path: Path) -> None:
    """A results.jsonl that is not a regular file (a FIFO would block, a device never end) is refused."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RunDirError(f"{path.parent} holds no {RESULTS}; is it a run directory?") from None
    if not stat.S_ISREG(mode):
        raise RunDirError(f"{path} is not a regular file (a FIFO, device or folder); not a run directory optbench "
                          "wrote")


def _at_end(f: Any) -> bool:
    at = f.tell()
    more = f.read(1)
    f.seek(at)
    return not more.strip()


def read_rows(run_dir: Path) -> list[dict[str, Any]]:
    """All complete rows (see :func:`iter_rows`); none where the directory has no results yet."""
    if not (Path(run_dir) / RESULTS).exists():
        return []
    return [row for _, row in iter_rows(run_dir)]


def restore_row(row: dict[str, Any]) -> dict[str, Any]:
    """The NaN and infinite numbers :func:`row_json` wrote as null, back in place."""
    for where, what in row.pop("nonfinite", None) or []:
        *path, last = where
        node: Any = row
        try:
            for k in path:
                node = node[k]
            node[last] = float(what)
        except (KeyError, IndexError, ValueError, TypeError):
            continue
    return row


def repair_tail(run_dir: Path) -> None:
    """Cut a torn last line so appends start on a fresh line (used by --resume)."""
    path = Path(run_dir) / RESULTS
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            f.truncate(cut)


def schema_note(run_dir: Path) -> str | None:
    """What the run's rows lack when an older schema version wrote them (None for today's rows)."""
    from optbench.row import Row

    path = Path(run_dir) / RESULTS
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            first = json.loads(f.readline() or "{}")
    except (OSError, json.JSONDecodeError):
        return None
    row = Row.from_dict(first)
    version = row.identity.schema_version or 1
    if version >= SCHEMA_VERSION:
        return None
    lacks = row.lacks()
    return (f"rows written by schema version {version} (today's is {SCHEMA_VERSION}): columns renamed since are read "
            f"under today's names" + (f"; they lack {', '.join(lacks)}" if lacks else ""))


def final_rows(run_dir: Path) -> dict[str, dict[str, Any]]:
    """The last final row per variant id, read row by row: memory grows with the variants, not the file; more
    than MAX_FINAL_ROWS variants is one line."""
    out: dict[str, dict[str, Any]] = {}
    if not (Path(run_dir) / RESULTS).exists():
        return out
    for _, row in iter_rows(run_dir):
        if row.get("status") in FINAL_STATUSES:
            out[row["variant_id"]] = row
            if len(out) > MAX_FINAL_ROWS:
                raise RunDirError(f"{Path(run_dir) / RESULTS} holds more than {MAX_FINAL_ROWS:,} variants, more than "
                                  "a report, a comparison or a gate can show; split the run")
    return out


def load_results(run_dir: str | Path):
    """The run's rows as a pandas DataFrame (one row per variant, the columns of :data:`COLUMNS` first)."""
    import pandas as pd

    run_dir = Path(run_dir)
    if not (run_dir / RESULTS).exists():
        raise RunDirError(f"{run_dir} holds no {RESULTS}; is it a run directory?")
    rows = list(final_rows(run_dir).values())
    df = pd.DataFrame(rows)
    for col in COLUMNS:
        if col not in df.columns:
            df[col] = None
        elif col in INTEGER:  # integers stay integers where some rows have none (pandas' nullable Int64)
            try:
                df[col] = df[col].astype("Int64")
            except (TypeError, ValueError):
                pass
    return df[COLUMNS + [c for c in df.columns if c not in COLUMNS]]


def csv_text(df) -> str:
    """Rows as CSV with every nested cell (settings, warnings, shapes, per-output metrics) written as JSON, so
    a spreadsheet or ``json.loads`` reads it back; the raw latency samples left out."""
    df = df.drop(columns=["samples_ms"], errors="ignore").copy()
    import pandas as pd

    for col in df.columns:
        if not pd.api.types.is_numeric_dtype(df[col]):  # object or string dtype (pandas 3 keeps text as str)
            df[col] = df[col].astype(object).map(lambda v: json.dumps(v, default=str) if isinstance(v, (dict, list, tuple)) else
                                  _inert(v))
    df.columns = [_inert(str(c)) for c in df.columns]
    return df.to_csv(index=False)


FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _inert(v: Any) -> Any:
    """A text cell a spreadsheet would run as a formula (an output named ``=cmd|' /C calc'!A0``) gets a leading
    apostrophe, as OWASP advises for CSV: shown as text, never evaluated."""
    return "'" + v if isinstance(v, str) and v.startswith(FORMULA) else v


def write_csv(run_dir: Path) -> Path:
    path = Path(run_dir) / "results.csv"
    path.write_text(csv_text(load_results(run_dir)))
    return path
