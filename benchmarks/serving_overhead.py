"""What the serving harness costs the host: LoadGen and optbench's batcher around a model that does nothing.

A lane that answers every batch with a view of its pool (no model, no copy) is served through the same
:class:`~optbench.measure.serving.batcher.Batcher` and :func:`~optbench.measure.serving.loadgen.run_scenario`
that serve a variant: LoadGen's offline scenario (every sample at once) and its server scenario at a QPS the
harness holds, unbatched and batched. Each run prints the samples it completed per second and the process's CPU
time per sample (every thread: LoadGen's issue and completion threads, the lanes', Python's): what the
harness takes from a model's budget per query. Run it as a script::

    python benchmarks/serving_overhead.py [--qps 5000] [--seconds 2] [--out overhead.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from optbench.measure.serving.batcher import Batcher, Policy  # noqa: E402
from optbench.measure.serving.loadgen import LoadSettings, run_scenario  # noqa: E402


class NoModel:
    """A lane with no model: a batch's answer is its pool's first rows, a view."""

    def __init__(self, pool: np.ndarray) -> None:
        self.pool = pool

    def run(self, index: np.ndarray) -> dict[str, np.ndarray]:
        return {"y": self.pool[: len(index)]}

    def describe(self) -> dict:
        return {"lane": "no model"}

    def compiles(self) -> None:
        return None

    def close(self) -> None:
        pass


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--qps", type=float, default=5000.0, help="server scenario's target QPS")
    ap.add_argument("--seconds", type=float, default=2.0, help="each run's minimum duration")
    ap.add_argument("--samples", type=int, default=1024)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    pool = np.zeros((a.samples, 16), np.float32)
    ms = int(a.seconds * 1000)
    rows = []
    with tempfile.TemporaryDirectory() as logs:
        for label, policy in (("unbatched", Policy(1)), ("batched 32, 1 ms", Policy(32, 0.001))):
            engine = Batcher(lambda _i: NoModel(pool), {"y": 0}, policy)
            try:
                for s in (LoadSettings("offline", min_duration_ms=ms, min_query_count=1, expected_qps=200_000),
                          LoadSettings("server", target_qps=a.qps, p99_ms=50, min_duration_ms=ms, min_query_count=1,
                                       max_async_queries=100_000)):
                    r = run_scenario(engine, a.samples, s, Path(logs) / f"{label}-{s.scenario}", label)
                    rows.append({"engine": label, "scenario": s.scenario, "target_qps": s.target_qps,
                                 "achieved_qps": r.achieved_qps, "p99_ms": r.p99_ms, "samples": r.samples,
                                 "cpu_us_per_sample": r.cpu_us_per_sample, "completions": r.completions})
                    print(f"{label:18} {s.scenario:8} {r.achieved_qps:10.0f} samples/s  p99 {r.p99_ms:7.3f} ms  "
                          f"CPU {r.cpu_us_per_sample:6.1f} us/sample  {r.completions} completion calls", flush=True)
            finally:
                engine.close()
    if a.out:
        a.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
