"""``optbench check``: the run's verdicts (decided in :mod:`optbench.check`) printed, as JUnit XML, and the latency
gate against the run history."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from optbench.check import Result, check_run, parse_overrides
from optbench.check.junit import write_junit
from optbench.commands.output import progress
from optbench.errors import OptbenchError
from optbench.spec.defaults import config_defaults


def spec_name(run_dir: Path) -> str:
    """The run's spec name (the run folder's name where the spec is missing)."""
    import yaml

    path = Path(run_dir) / "spec.yaml"
    try:
        name = (yaml.safe_load(path.read_text()) or {}).get("name") if path.exists() else None
    except yaml.YAMLError:
        name = None
    return str(name or Path(run_dir).name)


# ---------------------------------------------------------------- CLI
def history_results(run_dir: Path, n: int, db: str | None, effect: float, strict: bool, retime: str = "off",
                    pairs: int | None = None, say=None) -> list[Result]:
    """The run's latency against the level of its last ``n`` comparable runs in the history (see
    :func:`optbench.history.trends.gate`), an inconclusive verdict (every one under ``retime`` "always") settled by
    paired re-timing against the latest comparable run whose artifacts are still there
    (:func:`optbench.run.retime.against_history`): slower fails, inconclusive warns (fails under --strict)."""
    from optbench.history.store import open_history
    from optbench.history.trends import gate
    from optbench.measure.verdict import LatencyVerdict
    from optbench.store import final_rows

    history = open_history(db, required=True)
    rows = final_rows(run_dir) if retime != "off" else {}
    out = []
    for vid, word, message in gate(history, run_dir, n, effect):
        v = LatencyVerdict(word, None, None, message)
        if retime == "always" or (retime == "inconclusive" and word == "inconclusive"):
            from optbench.run.retime import against_history

            options = {"pairs": pairs} if pairs else {}
            v = against_history(history, run_dir, rows[vid], v, effect, say=say or (lambda s: None), **options)
        passed = v.word in ("same", "faster")
        out.append(Result(vid, "history latency", passed, v.line if v.pairs else f"{v.word}: {v.reason}",
                          warning=v.word == "inconclusive" and not strict, verdict=v.word, interval=v.interval,
                          pairs=v.pairs))
    return out


MAX_PAIRS = 50


def retime_mode(args) -> str:
    """--retime, --no-retime or neither (re-time where a verdict is inconclusive); --pairs checked."""
    from optbench.measure.paired import CHANGE_PAIRS

    if args.retime and args.no_retime:
        raise OptbenchError("--retime and --no-retime exclude each other")
    if args.pairs is not None and not CHANGE_PAIRS <= args.pairs <= MAX_PAIRS:
        raise OptbenchError(f"--pairs takes {CHANGE_PAIRS} to {MAX_PAIRS} pairs (fewer cannot reach the 99 % interval a "
                            f"slower or faster verdict needs), found {args.pairs}")
    return "always" if args.retime else "off" if args.no_retime else "inconclusive"


def add_retime_options(c) -> None:
    """The paired re-timing options ``check`` and ``compare`` share."""
    c.add_argument("--retime", action="store_true", help="decide every latency verdict by paired re-timing: the "
                                                         "baseline's and the candidate's artifacts timed again "
                                                         "alternately, each in a fresh worker process (by default "
                                                         "only inconclusive verdicts are re-timed)")
    c.add_argument("--no-retime", action="store_true", help="never re-time: verdicts on the runs' own rounds only")
    c.add_argument("--pairs", type=int, metavar="N", help="pairs of worker processes a re-timing runs at most "
                                                          "(default 32): 8 first, then 8 more at a time while the "
                                                          "verdict is still open")


def cmd_check(args) -> int:
    overrides = parse_overrides(args.budget or [])
    effect = args.min_effect if args.min_effect is not None else args.tolerance
    if effect is not None and not (math.isfinite(effect) and 0 < effect < 1):
        raise OptbenchError(f"--min-effect takes a fraction in (0, 1), e.g. 0.05 for 5 %, found {effect!r}")
    if args.strict and not (args.baseline or args.history):
        raise OptbenchError("--strict applies to the latency gate: give --baseline RUN or --history N")
    if (args.retime or args.pairs is not None) and not (args.baseline or args.history):
        raise OptbenchError("--retime and --pairs re-time a run against a baseline: give --baseline RUN or "
                            "--history N")
    if args.history is not None and args.history < 3:
        raise OptbenchError(f"--history takes the number of past runs to gate against, at least 3; found "
                            f"{args.history}")
    report = check_run(Path(args.run_dir), Path(args.baseline) if args.baseline else None, overrides,
                       strict_env=args.strict_env, min_effect=effect, strict=args.strict,
                       retime=retime_mode(args), pairs=args.pairs, say=progress)
    if args.history:
        report.results += history_results(Path(args.run_dir), args.history, args.history_db,
                                          effect if effect is not None else
                                          float(config_defaults("budgets")["latency"]["min_effect"]), args.strict,
                                          retime_mode(args), args.pairs, progress)
    for note in report.notes:
        print(f"note: {note}")
    for r in report.warnings:
        print(f"WARN {r.variant}: {r.check}: {r.message}")
    for r in report.violations:
        print(f"FAIL {r.variant}: {r.check}: {r.message}")
    if args.junit:
        try:
            from optbench.store import final_rows

            write_junit(report, Path(args.junit), spec_name(Path(args.run_dir)), final_rows(Path(args.run_dir)))
        except OSError as e:
            raise OptbenchError(f"--junit {args.junit}: cannot write it ({e.strerror})") from None
    if args.baseline or args.history:
        counts = report.latency_counts
        print("latency: " + ", ".join(f"{n} {w}" for w, n in counts.items()) +
              (" (inconclusive fails under --strict)" if counts["inconclusive"] and not args.strict else ""))
    passed = sum(r.passed for r in report.results)
    print(f"{passed}/{len(report.results)} checks passed, {len(report.violations)} violation(s), "
          f"{len(report.warnings)} warning(s)")
    return report.exit_code


def add_commands(sub) -> None:
    c = sub.add_parser("check", help="budgets and baseline gate → exit 0 (pass), 1 (violation), 2 (usage error)")
    c.add_argument("run_dir", help="the run directory to judge (results.jsonl inside)")
    c.add_argument("--baseline", help="run directory to compare latency with")
    c.add_argument("--history", type=int, metavar="N", help="gate latency against the level of the last N "
                                                             "comparable runs in the run history (same spec, "
                                                             "machine and library versions)")
    c.add_argument("--history-db", metavar="PATH|URL", help="the history database (default: $OPTBENCH_HISTORY, "
                                                            "else ~/.local/share/optbench/history.sqlite)")
    c.add_argument("--budget", action="append", metavar="[SELECTOR.]KEY=VALUE", help="override a budget (repeatable)")
    c.add_argument("--min-effect", type=float, help="smallest latency change that counts, as a fraction (default "
                                                    "0.05 from optbench/configs/budgets.yaml): slower beyond it and beyond the "
                                                    "rounds' noise exits 1")
    c.add_argument("--tolerance", type=float, help=argparse.SUPPRESS)  # the former name of --min-effect
    c.add_argument("--strict", action="store_true", help="an inconclusive latency verdict (noise, busy machine) "
                                                         "exits 1 instead of 0")
    c.add_argument("--strict-env", action="store_true", help="fail latency even when hardware/versions differ")
    add_retime_options(c)
    c.add_argument("--junitxml", "--junit", dest="junit", metavar="PATH",
                   help="write the verdicts as JUnit XML here (as pytest's --junitxml)")
    c.set_defaults(fn=cmd_check)

