"""Serving sections the machine cannot hold or the time limit cannot fit are refused at plan, naming the bound; a
serving part that hangs ends at what measure.timeout_s leaves it, keeping the scenarios that finished."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optbench.cli import main
from optbench.measure.serving.bounds import Machine, serving_problem
from optbench.spec.serving import ServingSpec
from tests.conftest import write_spec

SPEC = """\
name: bounds
model: {{source: onnx, path: "{model}"}}
inputs: [{{name: x, shape: [batch, 16], dtype: float32}}]
data: {{source: synthetic, calibration: 4, eval: 8}}
variants: {{precision: [fp32], batch_size: [1]}}
backends: [onnxruntime]
measure: {{timeout_s: {timeout}}}
serving: {serving}
"""


def _mlp(path: Path) -> Path:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((16, 10)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mlp",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _mlp(tmp_path_factory.mktemp("mlp") / "mlp.onnx")


@pytest.mark.parametrize("serving, field, says", [
    ("{scenario: server, qps: [1.0e+12], p99_ms: 10}", "serving.qps", "queries, more than the"),
    ("{scenario: offline, min_query_count: 1000000000000}", "serving.min_query_count", "queries, more than the"),
    ("{scenario: offline, dynamic_batching: {max_batch: 8, sizes: [1, 1000000000]}}",
     "serving.dynamic_batching.sizes.1", "less than or equal to 4096"),
    ("{scenario: offline, concurrency: [100000000]}", "serving.concurrency", "clients (a thread each)"),
    ("{scenario: [offline, soak], soak_s: 3600}", "serving", "not less than measure.timeout_s (120 s)"),
])
def test_serving_beyond_the_machine_or_the_time_limit_is_refused_at_plan(tmp_path, model, serving, field, says,
                                                                          capsys):
    spec = write_spec(tmp_path, SPEC.format(model=model, timeout=120, serving=serving))
    assert main(["plan", str(spec)]) == 2
    err = capsys.readouterr().err
    assert f"field '{field}'" in err and says in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_the_bounds_follow_the_machine():
    spec = ServingSpec(scenario="server", qps=[200_000.0], p99_ms=10, min_duration_ms=60_000,
                       max_duration_ms=60_000)  # 12 M queries
    assert serving_problem(spec, 900, Machine(memory_bytes=8 << 30, threads=4096))[0] == "serving.qps"
    assert serving_problem(spec, 900, Machine(memory_bytes=64 << 30, threads=4096)) is None
    wide = ServingSpec(scenario="offline", concurrency=[1, 512])
    assert serving_problem(wide, 900, Machine(8 << 30, threads=512))[0] == "serving.concurrency"
    assert serving_problem(wide, 900, Machine(8 << 30, threads=4096)) is None


def test_a_hanging_serving_run_ends_at_the_deadline_and_keeps_what_finished(tmp_path, model):
    """The single-stream run finishes, the server run hangs (its calls never return): serving ends at its
    deadline with an error and the finished run, where the worker used to time out and lose the whole row."""
    pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed (the 'serving' extra)")
    from optbench.backends import Artifact, Target, get_backend
    from optbench.measure.serving.run import serve_within

    cls = get_backend("onnxruntime")
    session = cls(cls.Options(threads=1)).build(Artifact(onnx_path=model),
                                                 Target("fp32", "cpu", 1, {}, "none", None, "onnx"))
    release, out = threading.Event(), {}

    from optbench.backends.base import Session

    class Hanging:
        """The session as serving sees it: once the first run is in, every later call hangs until the test ends."""

        names_outputs = True

        def infer(self, feeds):
            if out.get("runs"):
                release.wait()
            return session.infer(feeds)

        def lane(self, pool, axes, cuda_graphs=False):  # one shared lane through infer, as any session has
            return Session.lane(self, pool, axes, cuda_graphs)

    rng = np.random.default_rng(0)
    samples = [{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(8)]
    spec = ServingSpec(scenario=["single-stream", "server"], qps=[50.0], p99_ms=100, min_duration_ms=100,
                       min_query_count=8, energy=False, samples=8)
    t0 = time.monotonic()
    try:
        got = serve_within(4.0, Hanging(), samples, {"x": 0}, {"y": 0}, spec, tmp_path, "cpu", out=out)
        waited = time.monotonic() - t0
    finally:
        release.set()
        for t in threading.enumerate():
            if t.name == "optbench-serving":
                t.join(60)
        session.close()
    assert 4.0 <= waited < 10.0
    assert "did not finish in the 4 s" in got["error"]
    assert [r["scenario"] for r in got["runs"]] == ["single-stream"] and got["runs"][0]["queries"] >= 8
