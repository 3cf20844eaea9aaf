"""Harness fidelity: optbench's p50 against a minimal hand-written timing loop, on the same built session.

For each case, a backend session is built once through optbench's backends; then, in alternating rounds,
optbench's harness (``optbench.measure.measure_session``) and a bare loop time the same model object:

- torch: ``module(x)`` under ``torch.inference_mode``; on CUDA with a CUDA event pair around the bare call
  (device time) and the host clock around call + ``torch.cuda.synchronize()``;
- onnxruntime: ``InferenceSession.run`` (CPU) or ``run_with_iobinding`` on a binding made here (CUDA).

The ratio optbench p50 / hand p50 should lie within ±3 %: it is the median of the per-round ratios over the
*steady* rounds (the machine-speed probe agreed before and after the pair, and no other process was busy on
our CPUs); the ratio of the pooled medians and the spread of the per-round ratios are printed beside it. With
fewer than three steady rounds the case says it could not be measured, and why. Run it as a script::

    python benchmarks/harness_fidelity.py --device cpu  [--rounds 10] [--iters 30] [--out fidelity.json]
    python benchmarks/harness_fidelity.py --device cuda

It prints one line per case and a table last, and writes the figures as JSON when ``--out`` is given.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optbench.backends import Artifact, get_backend  # noqa: E402
from optbench.backends.base import Target  # noqa: E402
from optbench.export.onnx import export_onnx  # noqa: E402
from optbench.measure import contention, measure_session  # noqa: E402
from optbench.spec.models import ExportSettings, InputSpec, MeasureSettings  # noqa: E402

TOLERANCE = 0.03


def hand_torch(module, x, device: str, iters: int) -> tuple[list[float], list[float]]:
    """Samples (ms) of the bare call: host clock (call + synchronize) and, on CUDA, CUDA events."""
    import torch

    host, dev = [], []
    with torch.inference_mode():
        for _ in range(3):
            module(x)
        if device == "cuda":
            torch.cuda.synchronize()
        for _ in range(iters):
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                t0 = time.perf_counter()
                start.record()
                module(x)
                end.record()
                torch.cuda.synchronize()
                t1 = time.perf_counter()
                dev.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                module(x)
                t1 = time.perf_counter()
            host.append((t1 - t0) * 1e3)
    return host, dev


def hand_ort(sess, feeds: dict, device: str, iters: int) -> list[float]:
    import onnxruntime as ort

    out_names = [o.name for o in sess.get_outputs()]
    if device == "cuda":
        binding = sess.io_binding()
        for k, v in feeds.items():
            binding.bind_ortvalue_input(k, ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0))
        for n in out_names:
            binding.bind_output(n, "cuda", 0)
        call = lambda: sess.run_with_iobinding(binding)  # noqa: E731
    else:
        call = lambda: sess.run(out_names[:1], feeds)  # noqa: E731
    for _ in range(3):
        call()
    host = []
    for _ in range(iters):
        t0 = time.perf_counter()
        call()
        host.append((time.perf_counter() - t0) * 1e3)
    return host


def cases(device: str) -> list[dict]:
    if device == "cuda":
        return [
            {"label": "torch resnet50 fp16 bs8 (cuda)", "backend": "torch", "model": "resnet50", "batch": 8,
             "precision": "fp16", "options": {"device": "cuda", "channels_last": True}},
            {"label": "torch resnet50 fp16 bs64 (cuda)", "backend": "torch", "model": "resnet50", "batch": 64,
             "precision": "fp16", "options": {"device": "cuda", "channels_last": True}},
            {"label": "onnxruntime resnet50 fp32 bs8 (cuda, io binding)", "backend": "onnxruntime",
             "model": "resnet50", "batch": 8, "precision": "fp32",
             "options": {"provider": "cuda", "cudnn_conv_algo_search": "HEURISTIC"}},
        ]
    return [
        {"label": "torch resnet18 fp32 bs1 (cpu)", "backend": "torch", "model": "resnet18", "batch": 1,
         "precision": "fp32", "options": {"device": "cpu"}},
        {"label": "onnxruntime resnet18 fp32 bs1 (cpu)", "backend": "onnxruntime", "model": "resnet18", "batch": 1,
         "precision": "fp32", "options": {"provider": "cpu"}},
    ]


def run_case(case: dict, rounds: int, iters: int, workdir: Path) -> dict:
    import torch
    import torchvision

    torch.manual_seed(0)
    module = getattr(torchvision.models, case["model"])(weights=None).eval()
    inputs = [InputSpec(name="image", shape=["batch", 3, 224, 224])]
    sample = {"image": np.random.default_rng(0).standard_normal((case["batch"], 3, 224, 224), dtype=np.float32)}
    cls = get_backend(case["backend"])
    options = cls.Options.model_validate(case["options"])
    target = Target(precision=case["precision"], device=cls.device_of(options), batch_size=case["batch"],
                    dims={"batch": case["batch"]}, transform="none", int8=None, model_source="torchvision")
    if cls.consumes == "torch":
        artifact = Artifact(module=module, inputs=inputs, sample=sample)
    else:
        path = workdir / f"{case['model']}.onnx"
        if not path.exists():
            export_onnx(module, inputs, sample, path, ExportSettings(), ["logits"])
        artifact = Artifact(onnx_path=path, inputs=inputs, sample=sample)
    session = cls(options).build(artifact, target)
    settings = MeasureSettings(warmup_s=0.5, min_iters=iters, min_duration_s=0.0, max_iters=iters)
    ours, hand, ours_dev, hand_dev = [], [], [], []
    round_ratios, steady_ratios, unsteady = [], [], []
    for _ in range(rounds):  # alternate, so slow drifts (clocks, caches, other load) hit both alike
        before, probe0 = contention.snapshot(), contention.speed_probe()
        host, dev = measure_session(session, sample, case["batch"], settings)
        ours += host.samples_ms
        if dev is not None:
            ours_dev += dev.samples_ms
        if cls.consumes == "torch":
            bound = session.prepare(sample)
            h, d = hand_torch(session.module, next(iter(bound.values())), target.device, iters)
            hand_dev += d
        else:
            h = hand_ort(session.sess, sample, target.device, iters)
        hand += h
        ratio = host.percentile(50) / statistics.median(h)
        round_ratios.append(ratio)
        probe1, seen = contention.speed_probe(), contention.between(before, contention.snapshot())
        # a pair is steady when the machine's speed probe agreed before and after it and nobody else was busy
        why = contention.busy_reason(seen) or (
            f"speed probe {probe0:.2f} -> {probe1:.2f} us" if max(probe0, probe1) > 1.15 * min(probe0, probe1) else None)
        (unsteady.append(why) if why else steady_ratios.append(ratio))
    session.close()
    # p50 over all samples of all rounds: a per-round median can land on either mode of a bimodal latency
    out = {"case": case["label"], "optbench_p50_ms": statistics.median(ours), "hand_p50_ms": statistics.median(hand),
           "rounds": rounds, "iters_per_round": iters,
           "round_ratio_min": min(round_ratios), "round_ratio_max": max(round_ratios),
           "steady_rounds": len(steady_ratios), "unsteady": unsteady}
    out["pooled_ratio"] = out["optbench_p50_ms"] / out["hand_p50_ms"]
    # the ratio is the median of the per-round ratios of steady pairs: each pair ran back to back, on the same
    # machine state; pooled medians mix the machine's slow and fast periods unevenly between the two loops
    out["ratio"] = statistics.median(steady_ratios) if len(steady_ratios) >= 3 else None
    if ours_dev and hand_dev:
        out.update(optbench_gpu_p50_ms=statistics.median(ours_dev), hand_gpu_p50_ms=statistics.median(hand_dev))
        out["gpu_ratio"] = out["optbench_gpu_p50_ms"] / out["hand_gpu_p50_ms"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.device == "cuda":
        try:
            import onnxruntime

            onnxruntime.preload_dlls()
        except Exception:
            pass
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases(args.device):
            reason = get_backend(case["backend"]).unavailable_reason()
            if reason:
                print(f"skip {case['label']}: {reason}")
                continue
            r = run_case(case, args.rounds, args.iters, Path(tmp))
            results.append(r)
            print(json.dumps(r), flush=True)
    print(f"\n{'case':<52} {'optbench p50':>13} {'hand p50':>10} {'ratio':>7} {'rounds':>13} {'gpu ratio':>9}  within ±3%")
    ok = True
    for r in results:
        if r["ratio"] is None:
            ok = False
            print(f"{r['case']:<52} not measurable: only {r['steady_rounds']} of {r['rounds']} rounds steady "
                  f"({'; '.join(r['unsteady'][:3])})")
            continue
        within = abs(r["ratio"] - 1) <= TOLERANCE and abs(r.get("gpu_ratio", 1) - 1) <= TOLERANCE
        ok &= within
        gr = f"{r['gpu_ratio']:.3f}" if "gpu_ratio" in r else "–"
        print(f"{r['case']:<52} {r['optbench_p50_ms']:>11.3f}ms {r['hand_p50_ms']:>8.3f}ms {r['ratio']:>7.3f} {r['round_ratio_min']:>6.3f}-{r['round_ratio_max']:<6.3f} {gr:>9}  "
              f"{'yes' if within else 'NO'} ({r['steady_rounds']}/{r['rounds']} steady rounds, pooled {r['pooled_ratio']:.3f})")
    if args.out:
        args.out.write_text(json.dumps({"device": args.device, "results": results}, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
