"""Does a parallel executor keep timing honest? One spec run twice: one variant at a time (the baseline), then with
builds in parallel (``--jobs N``) or on Ray (``--executor ray``). Prints the wall times, the latency verdict per
variant (round medians, as ``optbench compare`` decides), and whether any two timing windows overlapped where they
must not (a CPU window with any other; two windows on one GPU).

    python benchmarks/executor_compare.py SPEC [--jobs 2 | --ray | --gpus 0,1 | --control] [--no-cache] [--out result.json]
        [--keep DIR] [--baseline DIR]

``--baseline DIR`` reuses a one-at-a-time run kept earlier (``--keep``: its ``serial`` folder) instead of running it
again; its wall time is then read from its files (plan.json written, last row appended). Per executor it reports the
median of ``start_s`` (dispatch to the variant's process start: the executor's fixed cost per variant) and ``wall_s``.

Exits 0 when no windows overlapped and no variant came out slower or faster beyond the noise.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def run(spec: str, out: Path, extra: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "optbench", "run", spec, "--run-dir", str(out), "--quiet", "--no-report",
                    *extra], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def overlaps(rows: list[dict]) -> list[str]:
    """Pairs of timing windows that shared what they must not: a CPU window and any other window of the node,
    or two windows on one GPU."""
    wins = [(r["variant_id"], r["device"], tuple([str(r["gpu"])] if r.get("gpu") is not None else
                                                  (r.get("gpu_ids") or ["0"])), r["node"], *w)
            for r in rows if r.get("status") == "ok"
            for w in (r.get("timing_windows") or ([r["timing_window"]] if r.get("timing_window") else []))]
    bad = []
    for i, (va, da, ga, na, sa, ea) in enumerate(wins):
        for vb, db, gb, nb, sb, eb in wins[i + 1:]:
            if va == vb or na != nb or ea <= sb or eb <= sa:
                continue
            if da == "cpu" or db == "cpu" or set(ga) & set(gb):
                bad.append(f"{va} [{sa:.3f}, {ea:.3f}] overlaps {vb} [{sb:.3f}, {eb:.3f}]")
    return bad


def _num(z) -> str:
    return f"{z:.4g}" if isinstance(z, float) else str(z)


def main(argv: list[str] | None = None) -> int:
    from optbench.measure.verdict import verdict_for
    from optbench.store import final_rows

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec")
    how = ap.add_mutually_exclusive_group(required=True)
    how.add_argument("--jobs", type=int)
    how.add_argument("--ray", action="store_true")
    how.add_argument("--gpus", help="local executor spreading CUDA variants over these GPUs (e.g. 0,1 or all)")
    how.add_argument("--control", action="store_true", help="the second run one at a time too: the verdicts two "
                                                            "one-at-a-time runs give each other (the noise floor)")
    ap.add_argument("--no-cache", action="store_true", help="rebuild every artifact in both runs (build cost counts)")
    ap.add_argument("--out")
    ap.add_argument("--keep")
    ap.add_argument("--baseline", help="a kept one-at-a-time run directory to compare against instead of a new one")
    args = ap.parse_args(argv)
    if args.baseline and not all((Path(args.baseline) / f).is_file() for f in ("results.jsonl", "plan.json")):
        print(f"executor_compare: --baseline {args.baseline}: no results.jsonl and plan.json there; pass a kept run "
              "directory (--keep DIR makes DIR/serial)", file=sys.stderr)
        return 2
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="optbench-exec-"))
    root.mkdir(parents=True, exist_ok=True)
    cache = ["--no-cache"] if args.no_cache else []
    serial = ["--gpus", "0"]  # one at a time, on one GPU (CPU-only specs ignore it)
    parallel = ["--executor", "ray"] if args.ray else ["--gpus", args.gpus] if args.gpus else \
        serial if args.control else ["--jobs", str(args.jobs)]
    if args.baseline:
        base = Path(args.baseline)
        took = (base / "results.jsonl").stat().st_mtime - (base / "plan.json").stat().st_mtime
        wall = {"one at a time": took, " ".join(parallel): run(args.spec, root / "parallel", cache + parallel)}
    else:
        base = root / "serial"
        wall = {"one at a time": run(args.spec, base, cache + serial),
                " ".join(parallel): run(args.spec, root / "parallel", cache + parallel)}
    a, b = final_rows(base), final_rows(root / "parallel")
    table, counts = [], {}
    for vid in sorted(a):
        x, y = a[vid], b.get(vid, {})
        if x.get("status") != "ok" or y.get("status") != "ok":
            table.append((vid, x.get("status"), y.get("status"), None, "", ""))
            continue
        v = verdict_for(y, x, 0.05)
        counts[v.word] = counts.get(v.word, 0) + 1
        gpu = [str(y["gpu"])] if y.get("gpu") is not None else y.get("gpu_ids")
        where = f"{y.get('node', '?')}" + (f" gpu {','.join(gpu)}" if gpu else "") + \
            (f", {len(y['overlapped_windows'])} windows beside" if y.get("overlapped_windows") else "")
        table.append((vid, x["latency_ms_p50"], y["latency_ms_p50"], v.ratio, v.word, where))
    bad = overlaps(list(b.values()))
    def median(rows: dict, col: str) -> float | None:
        v = sorted(r[col] for r in rows.values() if r.get("status") == "ok" and isinstance(r.get(col), (int, float)))
        return v[len(v) // 2] if v else None

    runs = dict(zip(wall, (a, b)))
    result = {"wall_s": wall, "speedup": wall["one at a time"] / max(list(wall.values())[1], 1e-9),
              "variant_wall_s_median": {k: median(r, "wall_s") for k, r in runs.items()},
              "start_s_median": {k: median(r, "start_s") for k, r in runs.items()},
              "verdicts": counts, "overlapping_windows": bad, "runs": str(root),
              "rows": [dict(zip(["variant", "p50_serial_ms", "p50_parallel_ms", "ratio", "verdict", "where"], t))
                       for t in table]}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print("| variant | p50 serial ms | p50 parallel ms | ratio | verdict | where |\n|---|---|---|---|---|---|")
    for vid, p, q, ratio, word, where in table:
        print(f"| {vid} | {_num(p)} | {_num(q)} | {_num(ratio)} | {word} | {where} |")
    for k in wall:
        print(f"{k}: variant wall median {_num(result['variant_wall_s_median'][k])} s, "
              f"start median {_num(result['start_s_median'][k])} s")
    print("\nwall: " + ", ".join(f"{k} {s:.1f} s" for k, s in wall.items()) +
          f"; verdicts {counts}; overlapping timing windows: {len(bad)}")
    for line in bad:
        print("overlap:", line)
    return 0 if not bad and not counts.get("slower") and not counts.get("faster") else 1


if __name__ == "__main__":
    sys.exit(main())
