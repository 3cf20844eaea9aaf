"""How long the command line takes to answer: ``--help``, ``--version`` and ``env`` (runtimes read from
package metadata) and ``env --deep`` (every runtime imported), each run REPEAT times in a fresh interpreter.

    python benchmarks/startup.py [--repeat 5] [--no-deep]

Prints the median and the range of wall seconds per command; targets: --help and --version < 0.5 s, env < 5 s
on a quiet 2-core machine. Time it with nothing else running."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def wall(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "optbench", *args], capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-deep", action="store_true", help="skip `env --deep` (tens of seconds)")
    a = p.parse_args()
    commands = [["--help"], ["--version"], ["env"]] + ([] if a.no_deep else [["env", "--deep"]])
    wall(["--version"])  # the file cache warm
    print(f"{'command':<22}{'median s':>10}{'min s':>9}{'max s':>9}   target")
    for cmd in commands:
        times = [wall(cmd) for _ in range(a.repeat if cmd != ["env", "--deep"] else 1)]
        target = {"--help": "< 0.5 s", "--version": "< 0.5 s", "env": "< 5 s"}.get(" ".join(cmd), "-")
        print(f"{'optbench ' + ' '.join(cmd):<22}{statistics.median(times):>10.2f}{min(times):>9.2f}"
              f"{max(times):>9.2f}   {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
