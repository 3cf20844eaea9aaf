"""Command line: the ``optbench`` parser, each command's parsers added by its module in :mod:`optbench.commands`
(run · build · plan · env · schema · check · report · compare · history · explain · tune · deploy), and any user's error
printed as one line, never a traceback."""

from __future__ import annotations

import argparse
import sys

from optbench.errors import OptbenchError


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optbench")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    from optbench.commands import check, deploy, env, explain, history, report, run, schema, tune

    p = argparse.ArgumentParser(prog="optbench", description="Benchmark and optimise deep-learning inference.")
    p.add_argument("--version", action="version", version=f"optbench {_version()}")
    sub = p.add_subparsers(dest="command", required=True)
    for commands in (run, env, schema, check, report, history, explain, tune, deploy):
        commands.add_commands(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    from optbench.terminal import plain_output

    parser = build_parser()
    args = parser.parse_args(argv)
    with plain_output():  # names read from files (node names, variant ids) never reach the terminal as escapes
        try:
            return args.fn(args)
        except OptbenchError as e:
            print(f"optbench: error: {e.format()}", file=sys.stderr)
            return e.exit_code
        except ImportError as e:  # a torch feature the spec check did not see: the extra, in one line
            from optbench.extras import missing_extra

            if (line := missing_extra(e)) is None:
                raise
            print(f"optbench: error: {line}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("optbench: interrupted", file=sys.stderr)
            return 130



if __name__ == "__main__":
    sys.exit(main())
