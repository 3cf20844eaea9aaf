"""Does the run history find a slowed commit? A sequence of real runs of the latency gate's spec (an MLP on torch
and ONNX Runtime, batch 1 and 16, rounds over three worker processes; ``--defaults``: one) recorded in a fresh SQLite history, where
every run from ``--slow-from`` on does 30 % more work under the same variant ids (a slowed commit and the commits
after it).

    python benchmarks/history_gate.py [--runs 10] [--slow-from 6] [--work 1.3] [--keep DIR] [--out FILE.json]

Targets: ``optbench history`` places one change point at the slowed run (within one run) for every variant and
none elsewhere; ``optbench check RUN --history 5`` calls the slowed run "slower" for every variant and the run
before it not slower. Prints a table last; exits 0 when every target is met. Time it with nothing else running.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from latency_gate import DEFAULTS_SPEC, SPEC  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--slow-from", type=int, default=6, help="0-based index of the first slowed run")
    ap.add_argument("--work", type=float, default=1.3)
    ap.add_argument("--defaults", action="store_true", help="optbench's default measure settings (one worker "
                    "process per run: check --history holds those to the gate's process rule)")
    ap.add_argument("--keep", help="keep the runs and the database here")
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args()
    root = Path(a.keep) if a.keep else Path(tempfile.mkdtemp(prefix="optbench-history-gate-"))
    root.mkdir(parents=True, exist_ok=True)
    spec = root / "gate.yaml"
    spec.write_text(DEFAULTS_SPEC if a.defaults else SPEC)
    db = f"sqlite:///{root / 'history.sqlite'}"
    runs, seconds = [], []
    for i in range(a.runs):
        work = a.work if i >= a.slow_from else 1.0
        env = {**os.environ, "OPTBENCH_GATE_WORK": str(work), "OPTBENCH_CACHE": str(root / f"cache-{work}"),
               "OPTBENCH_HISTORY": db}
        run = root / f"run{i:02d}"
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "optbench", "run", str(spec), "--run-dir", str(run), "--quiet",
                        "--no-report"], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        seconds.append(time.perf_counter() - t0)
        runs.append(run)
    env = {**os.environ, "OPTBENCH_HISTORY": db}
    series = json.loads(subprocess.run([sys.executable, "-m", "optbench", "history", "--spec", "gate", "--format",
                                        "json"], check=True, env=env, cwd=ROOT, capture_output=True,
                                       text=True).stdout)
    found = {s["variant"]: [st["run"] for st in s["steps"]] for s in series}
    levels = {s["variant"]: [round(p["value"], 4) for p in s["points"]] for s in series}
    placed = {v: steps for v, steps in found.items() if len(steps) == 1 and abs(steps[0] - a.slow_from) <= 1}

    def gate(run: Path) -> tuple[int, str]:
        p = subprocess.run([sys.executable, "-m", "optbench", "check", str(run), "--history", "5"], env=env,
                           cwd=ROOT, capture_output=True, text=True)
        return p.returncode, p.stdout

    slowed_code, slowed_out = gate(runs[a.slow_from])
    before_code, before_out = gate(runs[a.slow_from - 1])
    n = len(found)
    slowed_words = slowed_out.count("history latency: slower")
    result = {"runs": a.runs, "slow_from": a.slow_from, "work": a.work, "variants": n,
              "change_points": found, "levels_ms": levels, "placed": len(placed),
              "check_slowed_exit": slowed_code, "check_slowed_slower": slowed_words,
              "check_before_exit": before_code, "seconds_per_run": [round(s, 1) for s in seconds]}
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2))
    for v, steps in found.items():
        print(f"{v}: levels {levels[v]}; change points at runs {steps}")
    print(slowed_out.strip().splitlines()[-1] if slowed_out.strip() else "")
    ok = len(placed) == n and n > 0 and slowed_code == 1 and slowed_words == n and before_code == 0
    print("\n| check | result | target |\n|---|---|---|")
    print(f"| variants with one change point at run {a.slow_from} (+-1) | {len(placed)}/{n} | {n}/{n} |")
    print(f"| check --history 5 on the slowed run: slower verdicts (exit) | {slowed_words}/{n} ({slowed_code}) | "
          f"{n}/{n} (1) |")
    print(f"| check --history 5 on the run before it (exit) | {before_code} | 0 |")
    print(f"| seconds per run | {min(seconds):.0f}-{max(seconds):.0f} | |")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
