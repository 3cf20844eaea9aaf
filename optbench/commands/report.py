"""``optbench report`` and ``optbench compare``."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from optbench.commands.check import add_retime_options
from optbench.errors import OptbenchError


def cmd_report(args) -> int:
    from optbench.report.build import load_run
    from optbench.report.render import write_report

    if args.output and Path(args.output).is_dir():
        raise OptbenchError(f"-o {args.output} is a folder; give a file name, e.g. {Path(args.output) / ('report.' + args.format)}")
    if args.output is None and args.format in ("md", "csv"):  # text formats go to stdout, for pipes and job summaries
        from optbench.report.render import render_csv, render_md

        run = load_run(Path(args.run_dir))
        run["constraints"] = list(args.constraint or [])
        sys.stdout.write((render_md if args.format == "md" else render_csv)(run))
        return 0
    from optbench.commands.output import progress

    print(write_report(Path(args.run_dir), Path(args.output) if args.output else None, args.format,
                       args.constraint or [], explain=not args.no_explain, say=progress))
    return 0


FORMATS = {".html": "html", ".htm": "html", ".md": "md", ".csv": "csv", ".txt": "table"}


def cmd_compare(args) -> int:
    from optbench.commands.check import retime_mode
    from optbench.commands.output import progress
    from optbench.report.compare import compare_runs, render

    effect = getattr(args, "min_effect", None)
    if effect is not None and not (math.isfinite(effect) and 0 < effect < 1):
        raise OptbenchError(f"--min-effect takes a fraction in (0, 1), e.g. 0.05 for 5 %, found {effect!r}")
    fmt = args.format or (FORMATS.get(Path(args.output).suffix.lower(), "html") if args.output else "table")
    if args.output and Path(args.output).is_dir():
        raise OptbenchError(f"-o {args.output} is a folder; give a file name, e.g. {Path(args.output) / 'compare.html'}")
    cmp = compare_runs(Path(args.run_a), Path(args.run_b), effect, retime=retime_mode(args), pairs=args.pairs,
                       say=progress)
    text = render(cmp, fmt)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as e:
            raise OptbenchError(f"-o {args.output}: cannot write it ({e.strerror})") from None
        print(args.output)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if args.output or fmt == "table":  # verdict lines, never after a document printed to stdout
        if cmp["specs_differ"]:
            print("warning: the two runs come from different specs")
        if args.output:
            for r in cmp["rows"]:
                if r["mark"] and r["mark"] != "same":
                    ratio = f"{r['ratio']:.3f}x" if r["ratio"] is not None else "n/a"
                    print(f"{r['mark']}: {r['variant_id']} {ratio} ({r['reason']})")
    return 0


def add_commands(sub) -> None:
    r = sub.add_parser("report", help="write the run's report (HTML, Markdown or CSV)")
    r.add_argument("run_dir", help="the run directory to report on")
    r.add_argument("-o", "--output", help="output file (default: RUN_DIR/report.html for html; stdout for md and csv)")
    r.add_argument("--format", choices=["html", "md", "csv"], default="html")
    r.add_argument("--constraint", action="append", metavar="'COLUMN OP NUMBER'",
                   help="a deployment constraint for the recommendation, e.g. 'latency_ms_p99 <= 5' (repeatable)")
    r.add_argument("--no-explain", action="store_true",
                   help="do not explain failed or marginal variants not explained yet (each runs two graphs on a few "
                        "eval items); explanations kept in the run directory are still shown")
    r.set_defaults(fn=cmd_report)
    c = sub.add_parser("compare", help="compare two runs: latency ratios beyond noise, drift changes")
    c.add_argument("run_a", help="baseline run directory")
    c.add_argument("run_b", help="candidate run directory")
    c.add_argument("--min-effect", type=float, help="smallest latency change called faster or slower (default 0.05)")
    add_retime_options(c)
    c.add_argument("-o", "--output", help="write to this file (format from its suffix unless --format is given)")
    c.add_argument("--format", choices=["table", "html", "md", "csv"],
                   help="table (the terminal default), html, md or csv")
    c.set_defaults(fn=cmd_compare)
