"""A run directory given to ``history import``, read as a stranger's: every file it holds is checked (a regular
file, of a sane size, of the JSON or YAML type it should hold) before it is parsed, and every row before it is
stored. A directory whose files are wrong is one line and exit 2; a row that is wrong is skipped with its reason."""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optbench.errors import OptbenchError

MAX_FILE_BYTES = 16 << 20  # env.json, spec.yaml, history.json: far larger than any optbench writes
NUMBER_LISTS = ("latency_ms_rounds", "probe_us_rounds", "gpu_ms_rounds", "samples_ms", "gpu_samples_ms")
JSON_TYPES = {"integer": (int,), "number": (int, float), "string": (str,), "boolean": (bool,), "array": (list,),
              "object": (dict,)}


@dataclass
class ImportedRun:
    """What a run directory holds, checked: its spec and environment, its final rows, the rows left out (variant
    or line, and why), its uid if it carries one, and when it started (epoch seconds)."""

    spec: dict
    env: dict
    rows: dict[str, dict]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    uid: str | None = None
    started_at: float = 0.0


def regular_file(path: Path, what: str, limit: int = MAX_FILE_BYTES) -> os.stat_result | None:
    """The stat of ``path`` if it is a regular file of at most ``limit`` bytes (None if it is absent); a device, a
    FIFO, a folder or a huge file is one line."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OptbenchError(f"{path}: cannot read {what}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise OptbenchError(f"{path}: {what} is not a regular file (a device, FIFO or folder); not a run directory "
                            f"optbench wrote")
    if st.st_size > limit:
        raise OptbenchError(f"{path}: {what} is {st.st_size:,} bytes, more than {limit:,}; not a file optbench wrote")
    return st


def _text(path: Path, what: str) -> str | None:
    if regular_file(path, what) is None:
        return None
    try:
        with open(path, "rb") as f:
            return f.read(MAX_FILE_BYTES + 1).decode("utf-8")
    except UnicodeDecodeError:
        raise OptbenchError(f"{path}: {what} is not UTF-8 text") from None
    except OSError as e:
        raise OptbenchError(f"{path}: cannot read {what}: {e.strerror}") from None


def _mapping(path: Path, what: str, parse) -> dict:
    text = _text(path, what)
    if text is None:
        return {}
    try:
        data = parse(text)
    except Exception as e:  # JSON and YAML errors alike (a python/object tag is refused by safe_load)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        raise OptbenchError(f"{path}: {what} does not parse: {first}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise OptbenchError(f"{path}: {what} holds a {type(data).__name__}, not a mapping")
    return data


def read_run_dir(run_dir: Path) -> ImportedRun:
    """The run directory's files, each checked; its final rows read line by line (see :func:`row_problem`)."""
    import yaml

    from optbench.store import RESULTS, iter_rows

    results = run_dir / RESULTS
    if regular_file(results, RESULTS, limit=1 << 62) is None:
        raise OptbenchError(f"{run_dir}: no {RESULTS}; is it a run directory?")
    env = _mapping(run_dir / "env.json", "env.json", json.loads)
    spec = _mapping(run_dir / "spec.yaml", "spec.yaml", yaml.safe_load)
    carried = _mapping(run_dir / "history.json", "history.json", json.loads).get("uid")
    run = ImportedRun(spec, env, {}, uid=carried if isinstance(carried, str) and 0 < len(carried) <= 64 else None)
    from optbench.store import FINAL_STATUSES

    for line, row in iter_rows(run_dir, bad=lambda n, why: run.skipped.append((f"line {n}", why))):
        if row.get("status") not in FINAL_STATUSES:
            continue
        why = row_problem(row)
        if why:
            run.skipped.append((f"line {line} ({str(row.get('variant_id'))[:80]})", why))
            continue
        run.rows[row["variant_id"]] = row
    windows = [r["timing_window"][0] for r in run.rows.values() if r.get("timing_window")]
    run.started_at = min(windows) if windows else results.stat().st_mtime
    return run


def row_problem(row: Any) -> str | None:
    """Why a row cannot go into the history (None: it can): a row must name its variant, hold each column as the
    type the row schema gives it, numbers where lists of timings are, and yield every trend metric."""
    from optbench.history.metrics import METRICS, value_of
    from optbench.measure.verdict import rounds_of
    from optbench.row import BY_NAME

    vid = row.get("variant_id")
    if not isinstance(vid, str) or not vid or len(vid) > 400:
        return "no variant_id (text of at most 400 characters)"
    for name, value in row.items():
        column = BY_NAME.get(name)
        if value is None or column is None or column.type not in JSON_TYPES:
            continue
        if not isinstance(value, JSON_TYPES[column.type]) or (isinstance(value, bool) and column.type != "boolean"):
            return f"{name} is {type(value).__name__}, not {column.type}"
    for name in NUMBER_LISTS:
        if row.get(name) is not None and not all(_number(v) for v in row[name]):
            return f"{name} holds values that are not numbers"
    window = row.get("timing_window")
    if window is not None and not (len(window) == 2 and all(_number(v) and math.isfinite(v) for v in window)):
        return "timing_window is not two finite numbers (epoch seconds)"
    for name in ("rounds", "timing_windows", "overlapped_windows"):
        if row.get(name) is not None and not all(isinstance(v, (dict, list)) for v in row[name]):
            return f"{name} holds entries that are not records"
    try:
        if row.get("status") == "ok" and row.get("latency_ms_p50") is not None:
            rounds_of(row)  # what every trend and the history gate read
        for column in METRICS.values():
            value_of(row, column)
    except (TypeError, ValueError, KeyError, AttributeError) as e:
        return f"its metrics cannot be read ({type(e).__name__}: {str(e)[:80]})"
    return None


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
