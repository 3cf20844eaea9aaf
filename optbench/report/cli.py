"""``optbench report`` and ``optbench compare``."""

from __future__ import annotations

from pathlib import Path


def cmd_report(args) -> int:
    from optbench.report import write_report

    print(write_report(Path(args.run_dir), Path(args.output) if args.output else None, args.format))
    return 0


def cmd_compare(args) -> int:
    from optbench.report.compare import compare_runs, render

    cmp = compare_runs(Path(args.run_a), Path(args.run_b))
    text = render(cmp, args.format)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        print(args.output)
    else:
        print(text)
    marked = [r for r in cmp["rows"] if r["mark"]]
    if not args.output or args.format != "md":
        for r in marked:
            print(f"{r['mark']}: {r['variant_id']} {r['ratio']:.3f}x (99% CI {r['low']:.3f}-{r['high']:.3f})")
    return 0


def add_commands(sub) -> None:
    r = sub.add_parser("report", help="write the run's report (HTML, Markdown or CSV)")
    r.add_argument("run_dir")
    r.add_argument("-o", "--output", help="output file (default RUN_DIR/report.<format>)")
    r.add_argument("--format", choices=["html", "md", "csv"], default="html")
    r.set_defaults(fn=cmd_report)
    c = sub.add_parser("compare", help="compare two runs: latency ratios beyond noise, drift changes")
    c.add_argument("run_a", help="baseline run directory")
    c.add_argument("run_b", help="candidate run directory")
    c.add_argument("-o", "--output")
    c.add_argument("--format", choices=["html", "md", "csv"], default="html")
    c.set_defaults(fn=cmd_compare)
