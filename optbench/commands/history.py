"""``optbench history``: import run directories, and show a spec's trends (table, CSV, JSON, HTML)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from optbench.errors import OptbenchError


def cmd_history(args: argparse.Namespace) -> int:
    from optbench.history.store import open_history
    from optbench.history.trends import METRICS, csv_text, series, table
    from optbench.report.history_page import html_page

    if args.action == "import" and not args.runs:
        raise OptbenchError("history import takes run directories: optbench history import RUN [RUN ...]")
    history = open_history(args.db, required=True, create=args.action == "import")
    if args.action == "import":
        for run in args.runs:
            got = history.import_run(Path(run))
            print(f"{run}: {got.rows} rows (run {got.run_id})" + (f"; {got.note}" if got.note else ""))
            for what, why in got.skipped:
                print(f"  left out {what}: {why}")
        runs, rows = history.counts()
        print(f"history {history.safe_url}: {runs} runs, {rows} rows")
        return 0
    if args.runs:
        raise OptbenchError(f"unexpected arguments {args.runs}; did you mean `optbench history import ...`?")
    names = history.spec_names()
    if not names:
        print(f"history {history.safe_url} holds no runs yet (every `optbench run` adds one; "
              f"`optbench history import RUN` adds an existing run directory)")
        return 0
    spec = args.spec
    if spec is None:
        if len(names) > 1:
            raise OptbenchError("the history holds several specs; pick one with --spec", expected=" or ".join(names))
        spec = names[0]
    elif spec not in names:
        import difflib

        hint = difflib.get_close_matches(spec, names, n=1)
        raise OptbenchError(f"no runs of spec '{spec}' in the history" + (f"; did you mean '{hint[0]}'?" if hint
                                                                          else ""), expected=" or ".join(names))
    metrics = args.metric or (["p50", "throughput", "memory", "drift", "accuracy"] if args.format == "html" else ["p50"])
    for m in metrics:
        if m not in METRICS and not m.replace("_", "").isalnum():
            raise OptbenchError(f"--metric {m!r}: one of {sorted(METRICS)} or a row column")
    if args.format == "html":
        text = html_page(history, spec, args.variant, metrics)
    elif args.format == "json":
        found = [s.to_json() for m in metrics for s in series(history, spec, args.variant, m)]
        text = json.dumps(finite(found), indent=1, allow_nan=False)  # strict JSON: a non-finite number is null
    elif args.format == "csv":
        text = "".join(csv_text(series(history, spec, args.variant, m)) for m in metrics)
    else:
        parts = []
        for m in metrics:
            found = series(history, spec, args.variant, m)
            parts.append(table(found, m) if found else f"no {m} values for {args.variant} in spec '{spec}'\n")
        # whose history this is: the database every run of this account adds to (docs/history.md)
        text = f"history {history.safe_url} (every run of this account on this machine), spec '{spec}'\n" + \
            "".join(parts)
    if args.output:
        Path(args.output).write_text(text)
        print(f"history: {args.output}")
    else:
        sys.stdout.write(text)
    return 0


def add_commands(sub) -> None:
    h = sub.add_parser("history", help="the run history: trends per variant and metric, change points; "
                                       "`history import RUN...` adds run directories")
    h.add_argument("action", nargs="?", choices=["show", "import"], default="show",
                   help="show (default): a spec's trends; import: add run directories to the history")
    h.add_argument("runs", nargs="*", help="run directories (import)")
    h.add_argument("--spec", help="the spec's name (needed when the history holds several)")
    h.add_argument("--variant", default="*", metavar="PATTERN", help="variant ids to show (fnmatch; default all)")
    h.add_argument("--metric", action="append", metavar="NAME",
                   help="p50 (the quiet rounds' level, default), p99, throughput, memory, gpu_memory, drift, "
                        "accuracy, or any row column (repeatable)")
    h.add_argument("--format", choices=["table", "csv", "json", "html"], default="table")
    h.add_argument("-o", "--output", help="write to this file")
    h.add_argument("--db", metavar="PATH|URL", help="the history database (default: $OPTBENCH_HISTORY, else "
                                                    "~/.local/share/optbench/history.sqlite)")
    h.set_defaults(fn=cmd_history)


def finite(value):
    """``value`` with every NaN or infinite number made None (strict JSON has no such numbers)."""
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
