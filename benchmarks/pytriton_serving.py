"""A second opinion from a real server: one variant served by NVIDIA Triton (PyTriton) and measured by Triton's own
client, perf_analyzer, with the dynamic batching and the execution lanes optbench's serving scenarios use.

The variant is built through optbench's backend (``--backend``, its options) and served by the same lanes
(:meth:`optbench.backends.base.Session.lane`): the serving samples staged once where the lane runs, each lane
warmed at every batch size it may run (CUDA graphs captured with ``--cuda-graphs``), a request being the index of a
sample, as in optbench's system under test. What differs is everything around the lanes: Triton's HTTP/gRPC
front end and its dynamic batcher (``max_batch_size``, ``max_queue_delay_microseconds``, one model instance per
lane), PyTriton's proxy between the server's process and this one, and perf_analyzer in place of LoadGen:

- offline: closed loop at ``--concurrency`` requests in flight (perf_analyzer's ``--concurrency-range``), the
  ceiling the server figures are compared with;
- peak: Poisson arrivals at a request rate (``--request-rate-range R:R``), the highest rate whose p99 meets
  ``--p99-ms`` and whose achieved throughput is 95 % of the rate at least, by bisection between a rate that passed
  and one that failed (each rate measured in three windows of ``--window-ms``, perf_analyzer's stability check
  off: every window counts).

Triton's server needs numpy < 2 (PyTriton's wheel pins it): run it in an environment of its own, for example
``pip install --target /tmp/tsite 'numpy<2' nvidia-pytriton perf-analyzer`` and ``PYTHONPATH=/tmp/tsite:.``::

    python benchmarks/pytriton_serving.py --backend torch --precision fp16 --channels-last --cuda-graphs \\
        --instances 2 --max-batch 32 --max-delay-ms 2 --p99-ms 15 --out pytriton.json
"""

from __future__ import annotations

import argparse
import csv
import importlib.metadata
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build_lanes(a: argparse.Namespace) -> tuple[list, list[int], str]:
    """The variant's session and ``a.instances`` lanes, each warmed at every batch size it may run: (lanes, the
    sizes, the output's name)."""
    import torch
    import torchvision

    from optbench.backends import Artifact, get_backend
    from optbench.backends.base import Target
    from optbench.measure.serving.batcher import Policy, stage

    torch.manual_seed(0)
    net = getattr(torchvision.models, a.model)().eval()
    cls = get_backend(a.backend)
    options = {"device": a.device, "channels_last": a.channels_last}
    if a.backend == "torch-compile":
        options["freezing"] = a.freezing
    session = cls(cls.Options(**options)).build(Artifact(module=net),
                                                Target(a.precision, a.device, 1, {}, "none", None, "torch"))
    rng = np.random.default_rng(0)
    samples = [{"image": rng.random((1, 3, a.image, a.image), dtype=np.float32)} for _ in range(a.samples)]
    output = next(iter(session.infer(samples[0])))
    pool = stage(samples, {"image": 0})
    sizes = list(Policy(a.max_batch, 0.0, tuple(2 ** k for k in range(a.max_batch.bit_length())
                                                 if 2 ** k <= a.max_batch) + (a.max_batch,)).formed())
    lanes = []
    for _ in range(a.instances):
        lane = session.lane(pool, {"image": 0}, a.cuda_graphs)
        for size in sizes:
            for _ in range(3):
                lane.run(np.zeros(size, dtype=np.int64))
        lanes.append(lane)
    return lanes, sizes, output


def infer_function(lane, sizes: list[int], output: str):
    """A PyTriton inference callable around one lane: a batch of indices padded to the nearest warmed size (as
    optbench's batcher pads), run, and cut back."""
    from pytriton.decorators import batch

    @batch
    def infer(index: np.ndarray) -> dict[str, np.ndarray]:
        idx = index.reshape(-1).astype(np.int64)
        n = len(idx)
        size = min(s for s in sizes if s >= n)
        padded = np.concatenate([idx, np.repeat(idx[-1:], size - n)])
        return {"out": np.asarray(lane.run(padded)[output])[:n]}
    return infer


def perf_analyzer_binary() -> str:
    spec = importlib.util.find_spec("perf_analyzer")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("perf_analyzer is not installed (pip install perf-analyzer)")
    return str(Path(next(iter(spec.submodule_search_locations))) / "bin" / "perf_analyzer")


def measure(a: argparse.Namespace, work: Path, mode: list[str], tag: str) -> dict:
    """One perf_analyzer measurement: its CSV row (throughput, latencies in ms) and its exit status."""
    out = work / f"{tag}.csv"
    cmd = [perf_analyzer_binary(), "-m", "variant", "-u", f"localhost:{a.grpc_port}", "-i", "grpc", "-b", "1",
           "--input-data", str(work / "data.json"), "--async", "--measurement-interval", str(a.window_ms),
           "--percentile", "99", "--max-trials", "3", "--stability-percentage", "1000", "-f", str(out), *mode]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    row: dict = {"perf_analyzer": " ".join(cmd[1:]), "rc": done.returncode}
    if done.returncode != 0 or not out.exists():
        row["error"] = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return row
    rec = next(csv.DictReader(out.open()))
    row["items_s"] = float(rec["Inferences/Second"])
    for p in ("p50", "p90", "p95", "p99"):
        row[f"{p}_ms"] = float(rec[f"{p} latency"]) / 1000.0
    return row


def peak_search(a: argparse.Namespace, work: Path, offline: float) -> tuple[dict | None, list[dict]]:
    """Bisection over request rates: the highest whose p99 meets the bound and that was kept up with."""
    probes = []

    def probe(rate: float) -> bool:
        r = measure(a, work, ["--request-rate-range", f"{rate:.0f}:{rate:.0f}", "--request-distribution", "poisson"],
                    f"rate-{rate:.0f}")
        r["target_qps"] = round(rate)
        r["passed"] = "error" not in r and r["p99_ms"] <= a.p99_ms and r["items_s"] >= 0.95 * rate
        probes.append(r)
        print(f"  rate {rate:8.0f}/s: {r.get('items_s', 0):9.1f} items/s, p99 {r.get('p99_ms', float('nan')):7.2f} "
              f"ms, {'pass' if r['passed'] else 'fail'}", flush=True)
        return r["passed"]

    lo, hi = 0.0, None
    rate = 0.7 * offline
    while hi is None and len(probes) < a.probes:  # up from 0.7 of offline while the rates pass
        if probe(rate):
            lo, rate = rate, rate * 1.15
        else:
            hi = rate
    while lo == 0.0 and hi is not None and len(probes) < a.probes:  # the first failed: halve until one passes
        if probe(hi / 2):
            lo = hi / 2
        else:
            hi = hi / 2
    while lo > 0 and hi is not None and hi - lo > a.tolerance * lo and len(probes) < a.probes:  # then bisect
        mid = (lo + hi) / 2
        if probe(mid):
            lo = mid
        else:
            hi = mid
    best = max((p for p in probes if p["passed"]), key=lambda p: p["target_qps"], default=None)
    return best, probes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="torch", choices=["torch", "torch-compile"])
    ap.add_argument("--model", default="resnet50", help="a torchvision model")
    ap.add_argument("--image", type=int, default=224)
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--freezing", action="store_true", help="torch-compile: inductor freezing")
    ap.add_argument("--cuda-graphs", action="store_true", help="each lane replays a CUDA graph per batch size")
    ap.add_argument("--instances", type=int, default=2, help="lanes: Triton model instances")
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-delay-ms", type=float, default=2.0)
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--p99-ms", type=float, default=15.0)
    ap.add_argument("--concurrency", type=int, default=256, help="requests in flight for the offline figure")
    ap.add_argument("--window-ms", type=int, default=2000)
    ap.add_argument("--probes", type=int, default=8)
    ap.add_argument("--tolerance", type=float, default=0.05)
    ap.add_argument("--grpc-port", type=int, default=18001)
    ap.add_argument("--http-port", type=int, default=18000)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()

    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    t0 = time.perf_counter()
    lanes, sizes, output = build_lanes(a)
    print(f"built and warmed {len(lanes)} lane(s) at sizes {sizes} in {time.perf_counter() - t0:.0f} s", flush=True)
    probe = np.asarray(lanes[0].run(np.zeros(1, dtype=np.int64))[output])
    config = TritonConfig(http_port=a.http_port, grpc_port=a.grpc_port, metrics_port=a.http_port + 2, log_verbose=0)
    result: dict = {"variant": {k: v for k, v in vars(a).items() if k != "out"}, "sizes": sizes}
    security: dict = {}
    try:  # PyTriton >= 0.7 guards the statistics endpoint perf_analyzer reads with a token: this server listens on
        # the loopback for the benchmark only, so nothing is restricted
        from pytriton.triton import TritonSecurityConfig

        security["security_config"] = TritonSecurityConfig(restricted_endpoints=[])
    except ImportError:
        pass
    with Triton(config=config, **security) as triton, tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "data.json").write_text(json.dumps({"data": [{"index": [i]} for i in range(a.samples)]}))
        triton.bind(model_name="variant", infer_func=[infer_function(lane, sizes, output) for lane in lanes],
                    inputs=[Tensor(name="index", dtype=np.int64, shape=(1,))],
                    outputs=[Tensor(name="out", dtype=probe.dtype, shape=probe.shape[1:])],
                    config=ModelConfig(max_batch_size=a.max_batch, batcher=DynamicBatcher(
                        max_queue_delay_microseconds=int(a.max_delay_ms * 1000))), strict=False)
        triton.run()
        with urllib.request.urlopen(f"http://localhost:{a.http_port}/v2", timeout=10) as r:
            server = json.loads(r.read())
        result["server"] = {"triton": server.get("version"), "nvidia-pytriton": importlib.metadata.version(
            "nvidia-pytriton"), "perf-analyzer": importlib.metadata.version("perf-analyzer")}
        print(f"Triton {server.get('version')} (nvidia-pytriton {result['server']['nvidia-pytriton']}) serving",
              flush=True)
        offline = measure(a, work, ["--concurrency-range", f"{a.concurrency}:{a.concurrency}"], "offline")
        result["offline"] = offline
        print(f"  offline, {a.concurrency} in flight: {offline.get('items_s', 0):.1f} items/s "
              f"(p99 {offline.get('p99_ms', float('nan')):.2f} ms) {offline.get('error', '')}", flush=True)
        if "items_s" in offline:
            best, probes = peak_search(a, work, offline["items_s"])
            result["peak"], result["probes"] = best, probes
            if best:
                print(f"peak: {best['target_qps']}/s at p99 {best['p99_ms']:.2f} ms ("
                      f"{best['target_qps'] / offline['items_s']:.2f} of offline)", flush=True)
    for lane in lanes:
        lane.close()
    if a.out:
        a.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
