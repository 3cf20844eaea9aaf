"""``optbench tune SPEC``: search the spec's ``search:`` space for the fastest variant that passes, print the path,
the answer with its spec fragment and the frontier, and write the report."""

from __future__ import annotations

import argparse
from pathlib import Path

import optbench.clock as clock


def cmd_tune(args: argparse.Namespace) -> int:
    from optbench.errors import OptbenchError
    from optbench.specfile.load import load_spec
    from optbench.tune.answer import answer_lines
    from optbench.tune.driver import TuneOptions, tune

    spec_path = Path(args.spec)
    spec = load_spec(spec_path, args.set)
    if args.force and args.resume:
        raise OptbenchError("--force starts the search over and --resume continues it: give one")
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.out) / f"{spec.name}-tune-{clock.stamp('%Y%m%d-%H%M%S')}"
    opts = TuneOptions(run_dir=run_dir, spec_path=spec_path, force=args.force, resume=args.resume,
                       cache_dir=Path(args.cache_dir) if args.cache_dir else None, no_cache=args.no_cache,
                       quiet=args.quiet, history=args.history_db, no_history=args.no_history,
                       constraints=list(args.constraint or []))
    record = tune(spec, opts)
    print()
    for line in answer_lines(record.__dict__):
        print(line)
    best = (record.answer or {}).get("winner") or (record.answer or {}).get("closest")
    if best and best.get("fragment"):
        print("\nits settings, to paste into a spec:\n" + "\n".join("  " + x for x in best["fragment"].splitlines()))
    if not args.no_report:
        from optbench.report.render import write_report

        # the explanations the search made (its rankings) are shown; no other candidate is explained here
        print(f"report: {write_report(run_dir, explain=False)}")  # the run's spec holds --constraint too
    print(f"run directory: {run_dir} (optbench check / report / compare read it as any run)")
    return 0


def add_commands(sub) -> None:
    t = sub.add_parser("tune", help="search the spec's search: space for the fastest variant that passes every "
                                    "budget and constraint")
    t.add_argument("spec", help="a spec file (YAML) with a search: section")
    t.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a spec value (as for run)")
    where = t.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="the search's run directory (default: OUT/NAME-tune-TIMESTAMP)")
    where.add_argument("--out", default="results", help="root of new run directories (default: results)")
    t.add_argument("--force", action="store_true", help="start the search over in a run directory that holds one")
    t.add_argument("--resume", action="store_true", help="continue a search: candidates already measured are "
                                                         "replayed, not timed again")
    t.add_argument("--constraint", action="append", metavar="'COLUMN OP NUMBER'",
                   help="a deployment constraint every candidate must meet, over the spec's (repeatable)")
    t.add_argument("--cache-dir", help="artifact cache (default: $OPTBENCH_CACHE or ~/.cache/optbench)")
    t.add_argument("--no-cache", action="store_true", help="rebuild every artifact")
    t.add_argument("--quiet", action="store_true", help="no progress output")
    t.add_argument("--no-report", action="store_true", help="do not write report.html")
    t.add_argument("--no-history", action="store_true", help="keep this run out of the run history")
    t.add_argument("--history-db", metavar="PATH|URL", help="the history database (as for run)")
    t.set_defaults(fn=cmd_tune)
