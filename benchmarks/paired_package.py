"""Do paired latency verdicts agree with an independent timing, on model files nobody here wrote?

The material is ddddocr 1.6.1's two text recognisers, shipped in its wheel with one input signature
(``input1 [1, 1, 64, w]``): ``common.onnx`` (the current one, CNN + LSTM, 54 MB) and ``common_old.onnx``
(13.6 MB), and a third file made from ``common.onnx`` by ONNX Runtime's own dynamic int8 quantizer
(``onnxruntime.quantization.quantize_dynamic``). Each file is copied to ``model.onnx`` in a folder of its own
beside one spec text (ONNX Runtime, one thread, batch 1, width 192, optbench's default ``measure``), so the
three runs' variant ids agree and ``check --baseline`` pairs them as it pairs a model and its new version.

1. Runs: two of ``common.onnx`` (base0, base1), one of each other file.
2. Paired verdicts (``check --baseline --retime``, optbench's default pairs and ``--min-effect`` 5 %), both
   directions: base1 vs base0 and base0 vs base1 (same code), old vs base0 and back, int8 vs base0 and back.
3. The independent reference for each comparison: plain ``onnxruntime.InferenceSession`` loops written here
   (no optbench code), one thread, one core, the two files' sessions in one process, timed in ABBA blocks of
   0.4 s segments (the median call of each segment), in 4 fresh processes of 6 blocks each; the reference
   ratio is the median of the 24 block ratios B / A, its spread their 10th..90th percentiles.
4. Agreement: where the reference ratio is beyond +-(min-effect + 2 %), the verdict must be that change
   (slower / faster); within +-(min-effect - 2 %), it must be ``same``; in between, anything but the opposite
   change passes. Beside it, the paired estimate against the reference ratio (their relative difference).

    python benchmarks/paired_package.py [--out paired-package.json] [--keep DIR]

On the 2-core reference VM:
``python benchmarks/paired_package.py --out results/reference/cpu-2core-vm/paired-package-ddddocr.json``.
It prints a table last and exits 0 when every verdict agrees with its reference. Time nothing else meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SPEC = """\
name: paired-package
seed: 0
description: ddddocr's text recogniser as shipped (model.onnx beside this spec), one ONNX Runtime thread.
model: {source: onnx, path: model.onnx}
inputs:
  - {name: input1, shape: [batch, 1, 64, w], dtype: float32}
data: {source: synthetic, calibration: 4, eval: 8}
outputs:
  - {name: "387", batch_axis: 1}
variants:
  precision: [fp32]
  batch_size: [1]
  shapes: [{w: 192}]
backends: [{name: onnxruntime, threads: 1}]
"""
MIN_EFFECT = 0.05
MARGIN = 0.02

# The reference: plain ONNX Runtime, written for this benchmark alone (it imports nothing of optbench).
REFERENCE = r"""
import json, os, sys, time
import numpy as np
import onnxruntime as ort

a_path, b_path, blocks, segment_s, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
def session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
sa, sb = session(a_path), session(b_path)
x = {"input1": np.random.default_rng(seed).random((1, 1, 64, 192), dtype=np.float32)}
def segment(s, seconds):
    times, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        t0 = time.perf_counter()
        s.run(None, x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))
segment(sa, 0.5); segment(sb, 0.5)  # warm-up
rng = np.random.default_rng(seed)
ratios = []
for _ in range(blocks):
    order = [sa, sb, sb, sa] if rng.random() < 0.5 else [sb, sa, sa, sb]
    t = {}
    for s in order:
        t.setdefault(id(s), []).append(segment(s, segment_s))
    ratios.append(sum(t[id(sb)]) / sum(t[id(sa)]))
print(json.dumps({"ratios": ratios, "a_ms": 1e3 * segment(sa, segment_s), "b_ms": 1e3 * segment(sb, segment_s)}))
"""


def reference(a: Path, b: Path, processes: int = 4, blocks: int = 6, segment_s: float = 0.4) -> dict:
    """The independent ratio B / A (see the module's docstring)."""
    import numpy as np

    ratios, a_ms, b_ms = [], [], []
    for seed in range(processes):
        out = subprocess.run([sys.executable, "-c", REFERENCE, str(a), str(b), str(blocks), str(segment_s),
                              str(seed)], check=True, capture_output=True, text=True, cwd=tempfile.gettempdir())
        got = json.loads(out.stdout.strip().splitlines()[-1])
        ratios += got["ratios"]
        a_ms.append(got["a_ms"])
        b_ms.append(got["b_ms"])
    r = np.array(ratios)
    return {"ratio": float(np.median(r)), "p10": float(np.percentile(r, 10)), "p90": float(np.percentile(r, 90)),
            "blocks": len(r), "a_ms": float(np.median(a_ms)), "b_ms": float(np.median(b_ms))}


def expected(ratio: float) -> str:
    if ratio >= 1 + MIN_EFFECT + MARGIN:
        return "slower"
    if ratio <= 1 / (1 + MIN_EFFECT + MARGIN):
        return "faster"
    if 1 / (1 + MIN_EFFECT - MARGIN) <= ratio <= 1 + MIN_EFFECT - MARGIN:
        return "same"
    return "not the opposite change"


def agrees(verdict: str, want: str, ratio: float) -> bool:
    if want in ("slower", "faster", "same"):
        return verdict == want
    return verdict != ("faster" if ratio > 1 else "slower")


def run(folder: Path, out: Path, cache: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "optbench", "run", str(folder / "spec.yaml"), "--run-dir", str(out),
                    "--quiet", "--no-report"], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   env={**os.environ, "OPTBENCH_CACHE": str(cache)})
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the comparisons here (JSON); default: paired-package.json in the runs' folder")
    ap.add_argument("--keep", help="keep the run directories here")
    args = ap.parse_args(argv)
    import ddddocr
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from optbench.check import check_run
    from optbench.env import cpu_model
    from optbench.measure.paired import decide_paired

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="optbench-paired-package-"))
    root.mkdir(parents=True, exist_ok=True)
    shipped = Path(ddddocr.__file__).parent
    files = {"base": shipped / "common.onnx", "old": shipped / "common_old.onnx", "int8": root / "common.int8.onnx"}
    if not files["int8"].exists():
        quantize_dynamic(str(files["base"]), str(files["int8"]), weight_type=QuantType.QInt8)
    folders: dict[str, Path] = {}
    for name, f in files.items():
        folders[name] = root / name
        folders[name].mkdir(exist_ok=True)
        shutil.copyfile(f, folders[name] / "model.onnx")
        (folders[name] / "spec.yaml").write_text(SPEC)
    runs = {"base0": folders["base"] / "base0", "base1": folders["base"] / "base1", "old": folders["old"] / "old",
            "int8": folders["int8"] / "int8"}
    model_of = {"base0": "base", "base1": "base", "old": "old", "int8": "int8"}
    run_seconds = {name: round(run(folders[model_of[name]], d, root / "cache"), 1) for name, d in runs.items()}
    refs: dict[tuple[str, str], dict] = {}
    comparisons = []
    for cand, base in [("base1", "base0"), ("base0", "base1"), ("old", "base0"), ("base0", "old"),
                       ("int8", "base0"), ("base0", "int8")]:
        key = (model_of[base], model_of[cand])
        if key not in refs:
            refs[key] = reference(folders[key[0]] / "model.onnx", folders[key[1]] / "model.onnx")
        ref = refs[key]
        t0 = time.perf_counter()
        report = check_run(runs[cand], runs[base], retime="always", min_effect=MIN_EFFECT)
        seconds = time.perf_counter() - t0
        (res,) = [r for r in report.results if r.verdict]
        decided = decide_paired(list(res.pairs), MIN_EFFECT)  # the verdict's own estimate (None: too few quiet pairs)
        est = decided.ratio if decided.interval is not None else None
        want = expected(ref["ratio"])
        comparisons.append({
            "candidate": cand, "baseline": base, "verdict": res.verdict, "message": res.message,
            "paired_estimate": est, "interval": list(res.interval) if res.interval else None, "pairs": len(res.pairs),
            "reference": ref, "expected": want, "agrees": agrees(res.verdict, want, ref["ratio"]),
            "estimate_vs_reference": None if est is None else est / ref["ratio"] - 1, "seconds": round(seconds, 1)})
        print(f"{cand} vs {base}: {res.verdict} (estimate {est}, reference {ref['ratio']:.3f}, want {want})",
              flush=True)
    result = {"machine": {"cpu": cpu_model(), "cpus": os.cpu_count()},
              "versions": {p: version(p) for p in ("ddddocr", "onnxruntime", "optbench")},
              "material": {k: {"file": str(f), "bytes": f.stat().st_size} for k, f in files.items()},
              "settings": {"spec": SPEC, "min_effect": MIN_EFFECT, "margin": MARGIN,
                           "pairs": "optbench's default (8, then 8 more while open, up to 32)"},
              "run_seconds": run_seconds, "comparisons": comparisons, "runs": str(root)}
    out = Path(args.out) if args.out else root / "paired-package.json"
    out.write_text(json.dumps(result, indent=2))
    lines = ["| candidate vs baseline | reference B/A (p10..p90) | wanted | paired verdict | estimate (interval) | "
             "pairs | seconds |", "|---|---|---|---|---|---|---|"]
    for c in comparisons:
        r = c["reference"]
        iv = f" ({c['interval'][0]:.3f}..{c['interval'][1]:.3f})" if c["interval"] else ""
        est = f"{c['paired_estimate']:.3f}" if c["paired_estimate"] is not None else "-"
        lines.append(f"| {c['candidate']} vs {c['baseline']} | {r['ratio']:.3f} ({r['p10']:.3f}..{r['p90']:.3f}) | "
                     f"{c['expected']} | {c['verdict']}{'' if c['agrees'] else ' (MISS)'} | {est}{iv} | {c['pairs']} | "
                     f"{c['seconds']:.0f} |")
    print("\n" + "\n".join(lines) + f"\n\nJSON: {out}")
    return 0 if all(c["agrees"] for c in comparisons) else 1


if __name__ == "__main__":
    sys.exit(main())
