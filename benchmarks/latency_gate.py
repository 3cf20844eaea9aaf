"""Does the latency gate hold on this machine? Same-code reruns, a slower candidate, a busy machine.

1. Five back-to-back runs of one small spec (an MLP, torch and onnxruntime, batch 1 and 16); every ordered
   pair is checked with ``check --baseline``: a pair passes when every latency verdict is "same"
   (inconclusive does not count). Target: >= 19 of 20.
2. Two runs whose model does 30 % more work under the same variant ids (OPTBENCH_GATE_WORK=1.3), each checked
   against the five baselines: a pair passes when ``check`` exits 1 with a "slower" verdict. Target: >= 9 of 10.
3. One run timed while two busy-loop processes load both cores: every row should be flagged busy and every
   latency verdict against the baselines inconclusive.

    python benchmarks/latency_gate.py [--out gate.json] [--keep DIR]

``--defaults``: the same spec at optbench's default ``measure`` settings (one worker process per variant), a
candidate doing 2x the work, no busy run. Targets: no faster/slower verdict in the 20 same-code ordered pairs
(inconclusive is allowed: one process cannot see between-process shifts and says so); the 2x candidate slower
in all 10 pairs.

``--paired``: paired re-timing (``check --baseline --retime``): every latency verdict decided by timing both runs'
rows again alternately, in fresh worker processes (the ONNX Runtime rows from their cached files, the torch rows
rebuilt from the copy of the model file each run kept), at optbench's default ``measure`` settings and the default
pairs (8, then 8 more while the verdict is open, up to 32), on the ``--defaults`` spec at batch 1 (a torch row and
an ONNX Runtime row per run: each check re-times both, 2 x 8 to 2 x 32 worker processes a row). Each work level's runs read their own
copy of the model file (WORK fixed in it), under one spec text, so the variant ids agree. Protocol and targets:

- 5 same-code runs, the 20 ordered pairs: every verdict "same" (no inconclusive, no faster/slower);
- 2 runs of a candidate doing 10 % more work (11 hidden layers for 10: +9.7 % multiply-adds), each against the 5
  baselines, 10 pairs: "slower" (exit 1, every verdict slower) in >= 9;
- 2 runs doing 2x the work, 10 pairs: "slower" in all 10;
- two checks re-timed while two busy loops load both cores: every verdict inconclusive, saying the machine was busy;
- the wall time of every check is recorded.

The JSON (``--out``; by default ``latency-gate-paired.json`` in the runs' folder) holds every check's verdicts and
seconds, the machine and the settings. On the 2-core reference VM:
``python benchmarks/latency_gate.py --paired --out results/reference/cpu-2core-vm/latency-gate-paired-decision.json``
(42 checks of 2 variants; the JSON counts the pairs each verdict took). ``--paired --smoke`` runs the same steps at
the smallest settings (2 baselines, one candidate per work level, 8 pairs (the fewest a change verdict can be reached with), short timing windows): a check of
the machinery in minutes, whose numbers are no result.

It prints the counts, the verdicts that missed, and a table last; exits 0 when every target is met.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from optbench.check import check_run  # noqa: E402

SPEC = """\
name: gate
seed: 0
model: {source: python, entrypoint: "%s"}
inputs: [{name: x, shape: [batch, 256], dtype: float32}]
data: {source: synthetic, calibration: 8, eval: 32}
variants: {batch_size: [1, 16]}
backends: [{name: torch, device: cpu, threads: 1}, {name: onnxruntime, threads: 1}]
measure: {warmup_s: 0.2, min_iters: 50, min_duration_s: 1.5, rounds: 9, round_pause_s: 0.5, processes: 3}
""" % (ROOT / "benchmarks/models/gate_model.py:build")
DEFAULTS_SPEC = SPEC.rsplit("measure:", 1)[0]  # optbench's default measure settings


def run(spec: Path, out: Path, work: float, cache: Path) -> float:
    import subprocess

    env = {**os.environ, "OPTBENCH_GATE_WORK": str(work), "OPTBENCH_CACHE": str(cache)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "optbench", "run", str(spec), "--run-dir", str(out), "--quiet",
                    "--no-report"], check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def verdicts(candidate: Path, baseline: Path, **retime) -> tuple[int, dict[str, str]]:
    report = check_run(candidate, baseline, **retime)
    keep = retime.get("retime", "off") != "off"  # a paired "same" keeps its interval and pairs too
    return report.exit_code, {r.variant: r.verdict + (f" ({r.message})" if r.verdict != "same" or keep else "")
                              for r in report.results if r.verdict}


def _burn(stop) -> None:
    x = 0
    while not stop.is_set():
        x += 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the counts and verdicts here (JSON)")
    ap.add_argument("--keep", help="keep the run directories here")
    ap.add_argument("--defaults", action="store_true", help="default measure settings, a 2x candidate, no busy run")
    ap.add_argument("--paired", action="store_true", help="every verdict by paired re-timing, default measure settings")
    ap.add_argument("--smoke", action="store_true", help="with --paired: the smallest settings, a check of the "
                                                         "machinery (minutes), no result")
    args = ap.parse_args(argv)
    if args.smoke and not args.paired:
        ap.error("--smoke goes with --paired")
    if args.defaults:
        return defaults_gate(args)
    if args.paired:
        return paired_gate(args)
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="optbench-gate-"))
    root.mkdir(parents=True, exist_ok=True)
    spec = root / "gate.yaml"
    spec.write_text(SPEC)
    times: dict[str, float] = {}
    base = [root / f"base{i}" for i in range(5)]
    for d in base:
        times[d.name] = run(spec, d, 1.0, root / "cache-base")
    cand = [root / f"more{i}" for i in range(2)]
    for d in cand:
        times[d.name] = run(spec, d, 1.3, root / "cache-more")
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(2)]
    for p in burners:
        p.start()
    try:
        times["busy"] = run(spec, root / "busy", 1.0, root / "cache-base")
    finally:
        stop.set()
        for p in burners:
            p.join()

    same_pairs, misses = 0, []
    for a, b in itertools.permutations(base, 2):
        code, v = verdicts(b, a)
        ok = all(w.startswith("same") for w in v.values())
        same_pairs += ok
        if not ok:
            misses.append({"candidate": b.name, "baseline": a.name, "verdicts": v})
    slower_pairs = 0
    for c, a in itertools.product(cand, base):
        code, v = verdicts(c, a)
        ok = code == 1 and any(w.startswith("slower") for w in v.values())
        slower_pairs += ok
        if not ok:
            misses.append({"candidate": c.name, "baseline": a.name, "verdicts": v})
    import optbench

    busy_rows = optbench.load_results(root / "busy")
    flagged = int(busy_rows.busy.notna().sum())
    busy_inconclusive = 0
    for a in base:
        _, v = verdicts(root / "busy", a)
        busy_inconclusive += all(w.startswith("inconclusive") for w in v.values())
    result = {"same_pairs": same_pairs, "same_target": 19, "slower_pairs": slower_pairs, "slower_target": 9,
              "busy_rows_flagged": flagged, "busy_rows": len(busy_rows), "busy_pairs_inconclusive": busy_inconclusive,
              "run_seconds": times, "misses": misses, "runs": str(root),
              "busy_reasons": busy_rows.busy.dropna().tolist()}
    for m in misses:
        print(f"miss: {m['candidate']} vs {m['baseline']}: " + "; ".join(f"{k}: {w}" for k, w in m["verdicts"].items()
                                                                         if not w.startswith("same")))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    met = same_pairs >= 19 and slower_pairs >= 9 and flagged == len(busy_rows) and busy_inconclusive == len(base)
    print(f"\n| check | result | target |\n|---|---|---|\n"
          f"| same-code pairs all 'same' | {same_pairs}/20 | >= 19 |\n"
          f"| +30 % work pairs 'slower' (exit 1) | {slower_pairs}/10 | >= 9 |\n"
          f"| busy run: rows flagged | {flagged}/{len(busy_rows)} | all |\n"
          f"| busy run: pairs all inconclusive | {busy_inconclusive}/5 | 5 |\n"
          f"| seconds per run | {min(times.values()):.0f}-{max(times.values()):.0f} | |")
    return 0 if met else 1


def defaults_gate(args) -> int:
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="optbench-gate-defaults-"))
    root.mkdir(parents=True, exist_ok=True)
    spec = root / "gate.yaml"
    spec.write_text(DEFAULTS_SPEC)
    times: dict[str, float] = {}
    base = [root / f"base{i}" for i in range(5)]
    cand = [root / f"twice{i}" for i in range(2)]
    for d in base:
        times[d.name] = run(spec, d, 1.0, root / "cache-base")
    for d in cand:
        times[d.name] = run(spec, d, 2.0, root / "cache-twice")
    words: dict[str, int] = {}
    wrong, misses = 0, []
    for a, b in itertools.permutations(base, 2):
        _, v = verdicts(b, a)
        for w in v.values():
            word = w.split()[0]  # "same", or "inconclusive (inconclusive: ...)"
            words[word] = words.get(word, 0) + 1
        bad = {k: w for k, w in v.items() if w.startswith(("faster", "slower"))}
        wrong += bool(bad)
        if bad:
            misses.append({"candidate": b.name, "baseline": a.name, "verdicts": bad})
    slower_pairs = 0
    for c, a in itertools.product(cand, base):
        code, v = verdicts(c, a)
        ok = code == 1 and all(w.startswith("slower") for w in v.values())
        slower_pairs += ok
        if not ok:
            misses.append({"candidate": c.name, "baseline": a.name, "verdicts": v})
    for m in misses:
        print(f"miss: {m['candidate']} vs {m['baseline']}: " + "; ".join(f"{k}: {w}" for k, w in m["verdicts"].items()))
    result = {"same_code_pairs_with_a_verdict": wrong, "verdict_words": words, "twice_pairs_all_slower": slower_pairs,
              "run_seconds": times, "misses": misses, "runs": str(root)}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"\n| check (default measure settings) | result | target |\n|---|---|---|\n"
          f"| same-code ordered pairs with a faster/slower verdict | {wrong}/20 | 0 |\n"
          f"| same-code verdicts | {', '.join(f'{k} {n}' for k, n in sorted(words.items()))} | |\n"
          f"| 2x-work pairs: every variant slower (exit 1) | {slower_pairs}/10 | 10 |\n"
          f"| seconds per run | {min(times.values()):.0f}-{max(times.values()):.0f} | |")
    return 0 if wrong == 0 and slower_pairs == 10 else 1


SMOKE_MEASURE = "measure: {warmup_s: 0.05, min_iters: 10, min_duration_s: 0.1, rounds: 3}\n"


def _pairs_used(checks: list[dict]) -> dict[str, int]:
    """How many verdicts of the re-timed checks took each number of pairs (read from the verdicts' reasons)."""
    import re

    out: dict[str, int] = {}
    for c in checks:
        for w in c["verdicts"].values():
            m = re.search(r"; (\d+) pairs", w) or re.search(r"\d+ of (\d+) pairs", w)
            key = m.group(1) if m else "none"
            out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def paired_gate(args) -> int:
    """The done-when protocol of paired re-timing (see the module's docstring); ``args.smoke``: its smallest form."""
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="optbench-gate-paired-"))
    root.mkdir(parents=True, exist_ok=True)
    text = DEFAULTS_SPEC.replace('"%s"' % (ROOT / "benchmarks/models/gate_model.py:build"), '"gate_model.py:build"')
    text = text.replace("batch_size: [1, 16]", "batch_size: [1]")  # two variants a check: torch and onnxruntime
    if args.smoke:
        text += SMOKE_MEASURE
    source = (ROOT / "benchmarks/models/gate_model.py").read_text()
    assert source.count("\nWORK = None") == 1
    counts = {"base": 2, "more": 1, "twice": 1} if args.smoke else {"base": 5, "more": 2, "twice": 2}
    works = {"base": 1.0, "more": 1.1, "twice": 2.0}
    times: dict[str, float] = {}
    runs: dict[str, list[Path]] = {}
    for name, work in works.items():
        folder = root / name  # one copy of the model file per work level, the same spec text beside each
        folder.mkdir(exist_ok=True)
        (folder / "gate_model.py").write_text(source.replace("\nWORK = None", f"\nWORK = {work!r}"))
        (folder / "gate.yaml").write_text(text)
        runs[name] = [folder / f"{name}{i}" for i in range(counts[name])]
        for d in runs[name]:
            times[d.name] = run(folder / "gate.yaml", d, work, root / "cache")
    from optbench.measure.paired import CHANGE_PAIRS

    pairs = CHANGE_PAIRS if args.smoke else None  # None: optbench's default (8, then 8 more while open, up to 32)
    checks: list[dict] = []

    def paired(kind: str, candidate: Path, baseline: Path) -> tuple[int, dict[str, str]]:
        t0 = time.perf_counter()
        code, v = verdicts(candidate, baseline, retime="always", pairs=pairs)
        checks.append({"kind": kind, "candidate": candidate.name, "baseline": baseline.name, "exit": code,
                       "seconds": round(time.perf_counter() - t0, 1), "verdicts": v})
        return code, v

    base = runs["base"]
    same_pairs = sum(all(w.startswith("same") for w in paired("same", b, a)[1].values())
                     for a, b in itertools.permutations(base, 2))
    slower = {name: sum(code == 1 and all(w.startswith("slower") for w in v.values())
                        for code, v in (paired(name, c, a) for c, a in itertools.product(runs[name], base)))
              for name in ("more", "twice")}
    stop = mp.Event()
    burners = [mp.Process(target=_burn, args=(stop,), daemon=True) for _ in range(2)]
    for p in burners:
        p.start()
    try:  # both cores loaded while both sides are re-timed: never a verdict
        loaded = [paired("busy", b, base[0])[1] for b in (base[1], runs["more"][0])]
    finally:
        stop.set()
        for p in burners:
            p.join()
    busy_ok = sum(all(w.startswith("inconclusive") and "machine busy" in w for w in v.values()) for v in loaded)
    for c in checks:
        wrong = {k: w for k, w in c["verdicts"].items() if not w.startswith(
            {"same": "same", "more": "slower", "twice": "slower", "busy": "inconclusive"}[c["kind"]])}
        if wrong:
            print(f"miss ({c['kind']}): {c['candidate']} vs {c['baseline']}: " +
                  "; ".join(f"{k}: {w}" for k, w in wrong.items()))
    seconds = [c["seconds"] for c in checks]
    n_same, n_more, n_twice = len(base) * (len(base) - 1), len(runs["more"]) * len(base), len(runs["twice"]) * len(base)
    from optbench.env import cpu_model

    result = {"smoke": args.smoke, "machine": {"cpu": cpu_model(), "cpus": os.cpu_count()},
              "settings": {"spec": text, "pairs": pairs or "default (8, then 8 more while open, up to 32)"},
              "pairs_per_verdict": _pairs_used(checks),
              "same_pairs": same_pairs, "same_of": n_same, "more_10pct_pairs_slower": slower["more"], "more_of": n_more,
              "twice_pairs_slower": slower["twice"], "twice_of": n_twice, "busy_checks_all_inconclusive": busy_ok,
              "busy_checks": len(loaded), "check_seconds": {"min": min(seconds), "median": sorted(seconds)[len(seconds) // 2],
                                                            "max": max(seconds), "total": round(sum(seconds))},
              "checks": checks, "run_seconds": times, "runs": str(root)}
    out = Path(args.out) if args.out else root / "latency-gate-paired.json"
    out.write_text(json.dumps(result, indent=2))
    met = same_pairs == n_same and slower["more"] >= 0.9 * n_more and slower["twice"] == n_twice and \
        busy_ok == len(loaded)
    print(f"\n| check (paired re-timing{', SMOKE: not a result' if args.smoke else ', default measure settings'}) "
          f"| result | target |\n|---|---|---|\n"
          f"| same-code ordered pairs all 'same' | {same_pairs}/{n_same} | {n_same} |\n"
          f"| +10 % work pairs 'slower' (exit 1) | {slower['more']}/{n_more} | >= {0.9 * n_more:.0f} |\n"
          f"| 2x work pairs 'slower' (exit 1) | {slower['twice']}/{n_twice} | {n_twice} |\n"
          f"| both cores loaded: every verdict inconclusive, busy | {busy_ok}/{len(loaded)} | all |\n"
          f"| seconds per check | {min(seconds):.0f}-{max(seconds):.0f} (median {result['check_seconds']['median']:.0f}) | |\n"
          f"| seconds per run | {min(times.values()):.0f}-{max(times.values()):.0f} | |\n\nJSON: {out}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
