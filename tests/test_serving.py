"""Serving scenarios: the real LoadGen against a real ONNX Runtime session of a tiny model, the dynamic batcher,
the peak search, the concurrency sweep, energy, the soak, the spec section and check's verdicts."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optbench.backends import Artifact, get_backend
from optbench.backends.base import Target
from optbench.check import check_serving
from optbench.measure.serving import Batcher, Policy, serve
from optbench.measure.serving.batcher import rows, stack, stage, supported_sizes
from optbench.measure.serving.energy import EnergyMeter, RaplCounter, open_counter
from optbench.measure.serving.loadgen import LoadSettings, read_detail_log, run_scenario
from optbench.measure.serving.peak import find_peak
from optbench.measure.serving.soak import slope_per_min, soak, summarize
from optbench.spec.serving import ServingSpec
from tests.conftest import TINY, write_spec

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed (the 'serving' extra)")

SHORT = {"min_duration_ms": 500, "min_query_count": 16, "idle_s": 0.1, "samples": 32}


def mlp(path: Path, batch: int | str = "batch", hidden: int = 64) -> Path:
    """A two-layer MLP (16 -> hidden -> 10) as an ONNX file, its batch dynamic or fixed."""
    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.standard_normal((16, hidden)).astype(np.float32), "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, 10)).astype(np.float32), "w2")
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("MatMul", ["r", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], [w1, w2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


def ort_session(path: Path):
    """optbench's own ONNX Runtime backend session (one thread: the machine is shared)."""
    cls = get_backend("onnxruntime")
    backend = cls(cls.Options(threads=1))
    return backend.build(Artifact(onnx_path=path), Target("fp32", "cpu", 1, {}, "none", None, "onnx"))


def items(n: int = 32) -> list[dict]:
    rng = np.random.default_rng(1)
    return [{"x": rng.standard_normal((1, 16)).astype(np.float32)} for _ in range(n)]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    s = ort_session(mlp(tmp_path_factory.mktemp("mlp") / "mlp.onnx"))
    yield s
    s.close()


@pytest.fixture(scope="module")
def served(session, tmp_path_factory):
    """One serve(): server at three QPS values with and without dynamic batching, the peak search, a concurrency
    curve and offline; shared by the tests that read it."""
    spec = ServingSpec(scenario=["server", "offline"], qps=[20, 100, 400], p99_ms=50,
                       dynamic_batching={"max_batch": 8, "max_delay_ms": 2}, peak=True, peak_tolerance=0.5,
                       peak_probes=5, concurrency=[1, 2, 4], concurrency_s=0.4, **SHORT)
    logs = tmp_path_factory.mktemp("serving")
    return serve(session, items(), {"x": 0}, {"y": 0}, spec, logs, "cpu", hints={"latency_ms": 0.05})


# ---------------------------------------------------------------- the batcher
def test_policy_waits_for_a_full_group_or_the_max_delay_with_a_fake_clock():
    p = Policy(max_batch=4, max_delay_s=0.002)
    assert p.ready(0, 0.0, 5.0) == (0, float("inf"))
    take, wait = p.ready(2, oldest=10.0, now=10.0005)   # young group: keep waiting, until the delay is reached
    assert take == 0 and wait == pytest.approx(0.0015)
    assert p.ready(2, oldest=10.0, now=10.002) == (2, 0.0)   # the delay reached: the partial group goes
    assert p.ready(9, oldest=10.0, now=10.0) == (4, 0.0)     # a full group goes at once, max_batch at most
    assert Policy(1).ready(1, 0.0, 0.0) == (1, 0.0)          # no batching: each request at once


def test_policy_pads_to_the_nearest_built_size():
    p = Policy(max_batch=16, max_delay_s=0.0, sizes=(1, 4, 8))
    assert p.cap == 8                                         # no group beyond the largest built size
    assert [p.size_for(n) for n in (1, 2, 3, 4, 5, 8)] == [1, 4, 4, 4, 8, 8]
    assert Policy(max_batch=8).size_for(5) == 5               # a dynamic-shape session runs any size


def test_stack_and_rows_on_other_batch_axes_drop_the_padding():
    reqs = [{"x": np.full((2, 1, 3), i, np.float32), "sr": np.array(16000)} for i in range(3)]
    batch = stack(reqs, {"x": 1, "sr": None}, size=4)
    assert batch["x"].shape == (2, 4, 3) and batch["sr"] == 16000
    assert batch["x"][0, :, 0].tolist() == [0, 1, 2, 2]      # padded by repeating the last request
    part = rows({"y": batch["x"]}, {"y": 1}, 1, 3)           # items 1 and 2, along the output's batch axis
    assert part["y"].shape == (2, 2, 3) and part["y"][0, :, 0].tolist() == [1, 2]


def engine_of(session, policy=Policy(), instances=1, xs=None, **kw) -> Batcher:
    """A batcher over ``session``'s lanes, the pool staged from ``xs`` (items() by default)."""
    pool = stage(xs or items(), {"x": 0})
    return Batcher(lambda _i: session.lane(pool, {"x": 0}), {"y": 0}, policy, instances, **kw)


def served_all(engine: Batcher, indices: list[int]) -> list:
    """Submit every index at once, wait until each has its answer: the answers in order."""
    got: list = [None] * len(indices)
    left = threading.Semaphore(0)

    def answer(i: int, out) -> None:
        got[i] = out
        left.release()

    for i, x in enumerate(indices):
        engine.submit(x, lambda out, i=i: answer(i, out))
    for _ in indices:
        assert left.acquire(timeout=30)
    return got


@pytest.mark.parametrize("instances", [1, 3])
def test_batched_outputs_equal_unbatched_runs_in_request_order(session, instances):
    xs = items(40)
    alone = [session.infer(x)["y"] for x in xs]
    engine = engine_of(session, Policy(max_batch=8, max_delay_s=0.005, sizes=(1, 4, 8)), instances, xs)
    try:
        got = served_all(engine, list(range(40)))  # submitted at once: groups of 8 form, the rest pads to 4 or 8
        counts = engine.counts()
    finally:
        engine.close()
    for a, g in zip(alone, got):
        assert g["y"].shape == a.shape == (1, 10)
        np.testing.assert_allclose(g["y"], a, rtol=1e-5, atol=1e-5)
    assert set(counts) <= {1, 4, 8} and counts.get(8, 0) >= 1
    assert sum(size * n for size, n in counts.items()) == len(xs) + engine.padded
    assert [sorted(w) for w in engine.warm_ms] == [[1, 4, 8]] * instances  # every lane warmed every size first


def test_a_static_batch_model_is_served_padded_to_its_size(tmp_path):
    sess = ort_session(mlp(tmp_path / "fixed4.onnx", batch=4))
    try:
        sizes, seen = supported_sizes(sess.infer, items(1)[0], {"x": 0}, {"y": 0}, [1, 2, 4, 8])
        assert sizes == (4,) and seen[4] == "ok" and "Error" in seen[8]
        engine = engine_of(sess, Policy(1, 0.0, sizes))  # one request per call, padded
        try:
            assert engine(0)["y"].shape == (1, 10)
            assert engine.counts() == {4: 1} and engine.padded == 3
        finally:
            engine.close()
    finally:
        sess.close()


class Doubler:
    """A test lane: y = 2x from its pool, failing its ``fail_at``-th call; ``moves`` a fake clock by ``ms`` per call
    (by call number) where given."""

    def __init__(self, pool, fail_at=None, clock=None, ms=lambda n: 1.0) -> None:
        self.pool, self.fail_at, self.clock, self.ms, self.calls = pool, fail_at, clock, ms, 0
        self.compiled = 0

    def run(self, index):
        self.calls += 1
        if self.clock is not None:
            self.clock.t += self.ms(self.calls) / 1000.0
        if self.calls == self.fail_at:
            raise RuntimeError("boom")
        return {"y": self.pool["x"][index] * 2}

    def describe(self):
        return {"lane": "a test lane"}

    def compiles(self):
        return self.compiled

    def close(self):
        pass


def test_a_failing_call_fails_its_requests_and_the_engine_keeps_serving():
    pool = {"x": np.arange(8, dtype=np.float32).reshape(4, 2)}
    engine = Batcher(lambda _i: Doubler(pool, fail_at=4), {"y": 0})  # warm-up: 3 calls; the 4th fails
    try:
        with pytest.raises(RuntimeError, match="boom"):
            engine(1)
        assert engine(1)["y"].tolist() == [[4.0, 6.0]]
        assert engine.errors == 1
    finally:
        engine.close()


def test_a_lane_that_cannot_be_made_fails_the_engine_with_its_error():
    def broken(i: int):
        if i == 1:
            raise ValueError("lane 1 has no device")
        return Doubler({"x": np.ones((2, 2), np.float32)})

    with pytest.raises(ValueError, match="lane 1 has no device"):
        Batcher(broken, {"y": 0}, Policy(), instances=2)


class Recorded(list):
    """A list that notes which threads read its items (LoadGen's index list, as the issue thread hands it over)."""

    def __init__(self, *a) -> None:
        super().__init__(*a)
        self.readers: set[int] = set()

    def __getitem__(self, k):
        self.readers.add(threading.get_ident())
        return super().__getitem__(k)

    def __iter__(self):
        self.readers.add(threading.get_ident())
        return super().__iter__()


def test_the_issue_path_only_enqueues_and_groups_complete_in_bulk():
    """The thread that hands requests over never reads them one by one, and each group is answered with one call
    carrying all its requests: 10,000 requests of one chunk, groups of 32, so 313 answers."""
    pool = {"x": np.arange(64, dtype=np.float32).reshape(32, 2)}
    engine = Batcher(lambda _i: Doubler(pool), {"y": 0}, Policy(32, 0.0), instances=2)
    index = Recorded(i % 32 for i in range(10_000))
    answers: list[int] = []
    finished = threading.Event()
    lock = threading.Lock()

    def done(ids, out) -> None:
        with lock:
            answers.append(len(ids))
            if sum(answers) == 10_000:
                finished.set()

    try:
        engine.enqueue(index, range(10_000), done)
        assert finished.wait(30)
    finally:
        engine.close()
    assert threading.get_ident() not in index.readers and index.readers      # read on the lanes' threads only
    assert len(answers) == 313 and sum(answers) == 10_000 and max(answers) == 32
    assert engine.counts() == {32: 312, 16: 1}


class Meeting(Doubler):
    """A test lane whose first serving call waits (up to 10 s) until every lane of the engine is in one."""

    def __init__(self, pool, barrier: threading.Barrier) -> None:
        super().__init__(pool)
        self.barrier, self.met, self.serving = barrier, None, False

    def run(self, index):
        if self.serving and self.met is None:   # the first call after the warm-up
            try:
                self.met = self.barrier.wait(timeout=10) is not None
            except threading.BrokenBarrierError:
                self.met = False
        return super().run(index)


def test_every_lane_serves_a_chunk_that_arrives_at_once():
    """Three lanes, asleep with nothing pending; one chunk of 96 requests arrives: the lane woken by it wakes the
    next while requests are left, so all three are running a batch at the same moment."""
    pool = {"x": np.ones((8, 2), np.float32)}
    barrier = threading.Barrier(3)
    lanes = [Meeting(pool, barrier) for _ in range(3)]
    engine = Batcher(lambda i: lanes[i], {"y": 0}, Policy(8, 0.0), 3)
    answered = threading.Semaphore(0)
    try:
        for lane in lanes:
            lane.serving = True
        deadline = time.monotonic() + 10
        while engine.idle < 3 and time.monotonic() < deadline:  # every lane asleep with nothing pending
            time.sleep(0)
        engine.enqueue([i % 8 for i in range(96)], range(96), lambda ids, _out: [answered.release() for _ in ids])
        for _ in range(96):
            assert answered.acquire(timeout=30)
        assert [lane.met for lane in lanes] == [True] * 3
    finally:
        engine.close()


class Warming(Doubler):
    """A test lane whose first warm-up call waits (up to ``wait_s``) for the other lane's first warm-up call."""

    def __init__(self, pool, barrier: threading.Barrier, own_process: bool, wait_s: float) -> None:
        super().__init__(pool)
        self.barrier, self.own_process, self.wait_s, self.met = barrier, own_process, wait_s, None

    def run(self, index):
        if self.met is None:
            try:
                self.met = self.barrier.wait(timeout=self.wait_s) is not None
            except threading.BrokenBarrierError:
                self.met = False
        return super().run(index)


@pytest.mark.parametrize("own_process", [False, True])
def test_lanes_of_one_process_warm_one_after_another(own_process):
    """Two threads compiling one torch.compile'd module for a new shape at once fail in dynamo: lanes that share
    this process warm one at a time (their first warm-up calls never meet), lanes in processes of their own warm
    side by side (they meet)."""
    pool = {"x": np.ones((8, 2), np.float32)}
    barrier = threading.Barrier(2)
    lanes = [Warming(pool, barrier, own_process, 10.0 if own_process else 0.5) for _ in range(2)]
    engine = Batcher(lambda i: lanes[i], {"y": 0}, Policy(4, 0.0, (1, 4)), 2)
    try:
        assert engine(1)["y"].tolist() == [[2.0, 2.0]]
    finally:
        engine.close()
    assert [lane.met for lane in lanes] == ([True, True] if own_process else [False, False])


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.t += s


def test_a_stalled_batch_and_a_recompile_are_stalls_of_the_run():
    """On a fake clock: every call takes 1 ms, except the 5th, which takes 400 ms (a first-call stall)."""
    clock = FakeClock()
    pool = {"x": np.ones((4, 2), np.float32)}
    lane = Doubler(pool, clock=clock, ms=lambda n: 400.0 if n == 5 else 1.0)
    engine = Batcher(lambda _i: lane, {"y": 0}, clock=clock)
    try:
        assert engine.warm_ms == [{1: pytest.approx(1.0)}] and engine.stalls() == []
        engine(0)                    # the 4th call: warm
        assert engine.stalls() == []
        engine(1)                    # the 5th: 400x its warm time
        lane.compiled += 2           # and the runtime compiled two graphs meanwhile
        stalls = engine.stalls()
        assert stalls[0] == "a batch of 1 on lane 0 took 400.0 ms, 400x its warm time (1.00 ms)"
        assert "compiled 2 new graph(s)" in stalls[1]
        assert engine.batch_times()["1"] == {"calls": 2, "mean_ms": pytest.approx(200.5),
                                             "max_ms": pytest.approx(400.0)}
        engine.reset_counts()
        engine(2)
        assert engine.stalls() == []  # a new tally: nothing stalled since
    finally:
        engine.close()


def torch_session(compiled: bool = False):
    """optbench's torch backend session of a tiny conv net on the CPU, channels_last (its pool staged NHWC);
    ``compiled``: the module under dynamo (static shapes, backend 'eager': every new batch size compiles a frame)."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(144, 5))
    cls = get_backend("torch")
    session = cls(cls.Options(device="cpu", channels_last=True)).build(
        Artifact(module=net), Target("fp32", "cpu", 1, {}, "none", None, "torch"))
    if compiled:
        torch._dynamo.reset()
        session.module = torch.compile(session.module, backend="eager", dynamic=False)
    return session


def images(n: int) -> list[dict]:
    rng = np.random.default_rng(2)
    return [{"image": rng.random((1, 3, 8, 8), dtype=np.float32)} for _ in range(n)]


def test_torch_lanes_stage_once_and_answer_as_the_session_does():
    session = torch_session()
    xs = images(12)
    pool = stage(xs, {"image": 0})
    engine = Batcher(lambda _i: session.lane(pool, {"image": 0}), {"output": 0}, Policy(4, 0.002, (1, 2, 4)), 2)
    try:
        lane = engine.lanes[0]
        assert lane.pool["image"].shape == (12, 8, 8, 3)          # staged once, NHWC for a channels_last session
        got = served_all(engine, list(range(12)) * 2)
        assert engine.describe()["instances"] == 2 and "own thread" in engine.describe()["lane"]
    finally:
        engine.close()
    for i, g in enumerate(got):
        np.testing.assert_allclose(g["output"], session.infer(xs[i % 12])["output"], rtol=1e-5, atol=1e-6)


def test_a_recompile_while_serving_is_a_stall_and_warmed_sizes_are_not():
    """Dynamo compiles a frame per new batch size: the lanes' warm-up compiles every size the policy forms, so
    serving compiles nothing; a size never warmed (3, run behind the batcher's back) compiles while a tally is open,
    and the tally's stalls say so."""
    session = torch_session(compiled=True)
    pool = stage(images(8), {"image": 0})
    engine = Batcher(lambda _i: session.lane(pool, {"image": 0}), {"output": 0}, Policy(4, 0.0, (1, 2, 4)))
    try:
        engine.reset_counts()
        served_all(engine, list(range(8)) * 3)
        assert engine.stalls() == []
        engine.lanes[0].run(np.zeros(3, dtype=np.int64))
        assert any("compiled 1 new graph(s)" in x for x in engine.stalls())
    finally:
        engine.close()


# ---------------------------------------------------------------- LoadGen
def test_server_at_three_qps_with_and_without_dynamic_batching(served):
    server = [r for r in served["runs"] if r["scenario"] == "server"]
    assert sorted((r["batching"], r["target_qps"]) for r in server) == \
        sorted((b, q) for b in ("none", "dynamic") for q in (20.0, 100.0, 400.0))
    for r in server:
        assert r["validity"] in ("VALID", "INVALID")          # LoadGen's own word
        assert r["validity"] == "VALID" or r["reasons"]       # an INVALID run says why
        assert r["queries"] >= 16 and r["samples"] == r["queries"] and r["errors"] == 0
        assert r["p50_ms"] <= r["p99_ms"] <= r["max_ms"] and r["p99_bound_ms"] == 50
        assert r["achieved_qps"] == pytest.approx(r["target_qps"], rel=0.6)
        assert Path(r["log_dir"], "mlperf_log_summary.txt").exists()
        assert sum(r["batch_sizes"].values()) >= 1
    plain = [r for r in server if r["batching"] == "none"]
    assert all(set(r["batch_sizes"]) == {"1"} for r in plain)  # no batcher: one item per call
    assert sum(r["batch_sizes"]["1"] for r in plain) == sum(r["samples"] for r in plain)
    assert served["batching"]["sizes"] == [1, 2, 4, 8] and served["batching"]["judged"] == "dynamic"


class Intervals:
    """optbench's ONNX Runtime session, whose lanes note Python's thread switch interval at every call."""

    def __init__(self, session) -> None:
        self.session, self.seen = session, set()

    def infer(self, feeds):
        return self.session.infer(feeds)

    def lane(self, pool, axes, cuda_graphs=False):
        lane, seen = self.session.lane(pool, axes, cuda_graphs), self.seen

        class Noting(Leaky):
            def run(self, index):
                seen.add(sys.getswitchinterval())
                return lane.run(index)

        return Noting(lane, leak=False)


def test_serving_runs_under_a_short_switch_interval_and_restores_pythons(session, tmp_path):
    """A lane running Python (an eager model) holds the interpreter for up to the switch interval while LoadGen's
    issue callback waits for it: serving shortens it, records it, and gives Python its own back."""
    before = sys.getswitchinterval()
    noted = Intervals(session)
    spec = ServingSpec(scenario="offline", energy=False, switch_interval_ms=0.25, min_duration_ms=100,
                       min_query_count=8, samples=8)
    out = serve(noted, items(8), {"x": 0}, {"y": 0}, spec, tmp_path, "cpu")
    assert noted.seen == {0.00025} and out["switch_interval_ms"] == 0.25
    assert sys.getswitchinterval() == before


def test_short_settings_are_invalid_by_loadgen_rules_and_say_so(session, tmp_path):
    engine = engine_of(session)
    try:
        s = LoadSettings("server", target_qps=50, p99_ms=50, min_duration_ms=300, min_query_count=8)
        r = run_scenario(engine, 32, s, tmp_path / "srv", meter=None)
    finally:
        engine.close()
    assert r.validity == "INVALID"   # some 15 queries cannot satisfy LoadGen's early stopping
    assert any(x.startswith("early stopping not met") for x in r.reasons)
    assert "Run unsuccessful" in r.early_stopping
    log = read_detail_log(tmp_path / "srv" / "mlperf_log_detail.txt")
    assert log.get("result_validity") == "INVALID" and log.get("requested_server_target_qps") == 50


def test_the_run_prints_its_serving_figures(served):
    """`optbench run` with a serving: section prints each LoadGen run's QPS and p99, and the peak at the bound."""
    import pandas as pd

    from optbench.commands.output import cell
    from optbench.commands.run import _serving_table

    text = _serving_table(pd.DataFrame([{"variant_id": "onnxruntime.fp32.none.bs1", "status": "ok",
                                         "serving": served}, {"variant_id": "x", "status": "ok", "serving": None}]))
    lines = text.splitlines()
    assert lines[0].startswith("serving (MLPerf LoadGen; p99 bound 50 ms")
    assert lines[1].split() == ["variant_id", "batching", "scenario", "target_qps", "achieved_qps", "p50_ms",
                                "p99_ms", "validity"]
    for r in served["runs"]:
        cells = [r["batching"], r["scenario"], cell(r["target_qps"]), cell(r["achieved_qps"]), cell(r["p50_ms"]),
                 cell(r["p99_ms"]), r["validity"]]
        assert ["onnxruntime.fp32.none.bs1"] + cells in [x.split() for x in lines[3:]], (cells, text)
    peaks = [x.split() for x in lines if "peak at bound" in x]
    assert [(p[1], p[5]) for p in peaks] == [(p["batching"], cell(p["qps"])) for p in served["peak"]], text
    assert _serving_table(pd.DataFrame([{"variant_id": "x", "status": "ok"}])) == ""


def test_offline_single_and_multi_stream(session, tmp_path):
    engine = engine_of(session, Policy(8, 0.001))
    try:
        out = {}
        for name in ("offline", "single-stream", "multi-stream"):
            s = LoadSettings(name, min_duration_ms=300, min_query_count=8, expected_qps=2000,
                             expected_latency_ms=0.2, samples_per_query=4)
            out[name] = run_scenario(engine, 32, s, tmp_path / name, "dynamic")
    finally:
        engine.close()
    offline = out["offline"]
    assert offline.queries == 1 and offline.samples >= 600   # one query of every sample
    assert max(int(k) for k in offline.batch_sizes) == 8     # the batcher filled its groups
    assert offline.completions == sum(offline.batch_sizes.values())  # one bulk answer per group
    assert offline.cpu_s > 0 and offline.cpu_us_per_sample == pytest.approx(offline.cpu_s / offline.samples * 1e6,
                                                                             rel=1e-2)
    assert out["single-stream"].batch_sizes == {"1": out["single-stream"].samples}
    assert out["multi-stream"].samples == 4 * out["multi-stream"].queries
    for r in out.values():
        assert r.validity in ("VALID", "INVALID") and r.achieved_qps > 0 and r.p99_ms is not None


def test_peak_search_brackets_with_the_server_runs_and_bisects(served):
    assert [p["batching"] for p in served["peak"]] == ["none", "dynamic"]
    for p in served["peak"]:
        assert p["qps"] is not None and p["qps"] >= 20     # the runs at 20 QPS met a 50 ms bound on this model
        assert p["p99_ms"] <= 50 and "bisection" in p["method"]
        assert p["probes"] and all(set(x) >= {"target_qps", "p99_ms", "met", "validity"} for x in p["probes"])
        assert p["probes"][0]["role"] == "warm-up"           # read by no bracket
        met = [x["target_qps"] for x in p["probes"] if x["met"] and x["role"] != "warm-up" and not x["superseded"]]
        assert p["qps"] >= max(met + [0])


class Server:
    """A fake server for the peak search: its p99 meets 10 ms up to ``capacity`` QPS; the runs named in ``bad``
    (by call number, from 1) fail whatever their QPS — with a stall in their reasons where ``stalled``."""

    def __init__(self, capacity: float, bad: set[int] = frozenset(), stalled: bool = False) -> None:
        self.capacity, self.bad, self.stalled, self.calls = capacity, bad, stalled, []

    def __call__(self, qps: float):
        from optbench.measure.serving.loadgen import ScenarioResult

        self.calls.append(qps)
        bad = len(self.calls) in self.bad
        p99 = 40.0 if bad or qps > self.capacity else 5.0
        r = ScenarioResult("server", "none", qps, qps, 1, 2, 3, p99, 1, p99, 10.0, p99 <= 10, "INVALID", [], "",
                           None, 10, 10, 1.0, 1.0, {"1": 10}, 0, 0, [], {}, "")
        r.stalls = ["a batch of 8 on lane 0 took 600.0 ms, 200x its warm time (3.00 ms)"] if bad and self.stalled \
            else []
        return r


def test_peak_search_logic_on_a_known_capacity():
    fake = Server(300)
    peak = find_peak(fake, [fake(100), fake(1000)], 10.0, start_qps=50, tolerance=0.05, max_probes=12)
    assert 300 / 1.05 <= peak.qps <= 300 and peak.note is None
    assert len(peak.probes) == len(fake.calls) - 2                 # every run of the search kept, in order
    assert peak.probes[-1]["role"] == "re-run" and not peak.probes[-1]["met"]   # the upper bound failed twice
    none = find_peak(Server(0), [], 10.0, start_qps=8, max_probes=6)
    assert none.qps is None and "no QPS" in none.note


def test_a_first_run_that_pays_for_compilation_does_not_cap_the_peak():
    """The first run on an engine fails (it compiled on the clock): the warm-up takes it, and the peak is found
    near the real capacity, not below the start."""
    fake = Server(800, bad={1})
    peak = find_peak(fake, [], 10.0, start_qps=400, tolerance=0.1, max_probes=12)
    assert 800 / 1.1 <= peak.qps <= 800, peak.probes
    assert peak.probes[0] == {**peak.probes[0], "role": "warm-up", "met": False}


@pytest.mark.parametrize("stalled", [True, False], ids=["stalled", "failed-once"])
def test_one_bad_probe_is_run_again_and_the_second_run_decides(stalled):
    """The 3rd run fails at a QPS the server holds (a stall in its reasons, or none): it is run again — at once
    where it stalled, as the bracket's upper bound before the search ends where not — the first result kept as
    superseded, and the peak is the real one, not one below the bad probe."""
    fake = Server(800, bad={3}, stalled=stalled)
    peak = find_peak(fake, [], 10.0, start_qps=100, tolerance=0.1, max_probes=16)
    assert 800 / 1.1 <= peak.qps <= 800, peak.probes
    bad = peak.probes[2]
    assert not bad["met"] and bad["superseded"] and bool(bad["stalls"]) is stalled
    again = [x for x in peak.probes if x["target_qps"] == bad["target_qps"] and x["role"] == "re-run"]
    assert again and again[0]["met"] and not again[0]["superseded"]
    if stalled:
        assert peak.probes[3] is again[0]


def test_a_failure_below_a_passing_qps_is_run_again_first():
    """Off the curve: the spec's server runs passed at 400 QPS and failed at 200; the search repeats 200 first."""
    fake = Server(800, bad={2})
    known = [fake(400), fake(200)]
    peak = find_peak(fake, known, 10.0, start_qps=300, tolerance=0.1, max_probes=12)
    assert [(x["target_qps"], x["role"], x["met"]) for x in peak.probes[:2]] == [(300, "warm-up", True),
                                                                                (200, "re-run", True)]
    assert 800 / 1.1 <= peak.qps <= 800


def test_an_upper_bound_that_passes_again_widens_the_bracket_upward():
    """The 3rd run, at 1600 QPS, fails once by chance (no stall, nothing below it failed): the search bisects
    between 800 and 1600 and, before it ends, runs 1600 again; it passes, and the bracket widens to 3200."""
    fake = Server(2000, bad={3})
    peak = find_peak(fake, [], 10.0, start_qps=400, tolerance=0.1, max_probes=16)
    assert 1600 < peak.qps <= 2000 and 2000 / peak.qps <= 1.1, peak.probes
    assert 3200.0 in fake.calls


def test_concurrency_curve(served):
    points = served["concurrency"]
    assert [(p["batching"], p["concurrency"]) for p in points] == [("none", 1), ("none", 2), ("none", 4),
                                                                     ("dynamic", 1), ("dynamic", 2), ("dynamic", 4)]
    for p in points:
        assert p["requests"] > 0 and p["errors"] == 0 and p["throughput_items_s"] > 0
        assert p["p50_ms"] <= p["p99_ms"]
    dyn4 = next(p for p in points if p["batching"] == "dynamic" and p["concurrency"] == 4)
    assert max(int(k) for k in dyn4["batch_sizes"]) >= 2   # four clients in flight get grouped


def test_offline_runs_with_and_without_batching(served):
    offline = {r["batching"]: r for r in served["runs"] if r["scenario"] == "offline"}
    assert set(offline) == {"none", "dynamic"}
    assert offline["none"]["batch_sizes"].keys() == {"1"}
    assert offline["dynamic"]["achieved_qps"] > 0 and served["capacity_items_s"]["dynamic"] > 0


# ---------------------------------------------------------------- energy
def test_energy_on_this_machine_says_why_it_is_unavailable(served):
    counter, why = open_counter("cpu")
    if counter is not None:
        pytest.skip(f"this machine exposes an energy counter ({why})")
    assert why.startswith("unavailable because")
    assert served["energy"] == {"unavailable": why}
    assert all(r["energy"] is None for r in served["runs"])


class SyntheticCounter:
    """A counter of a device drawing ``watts`` (the fake clock's seconds): joules are watts x time."""

    source = "synthetic"

    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.watts, self.j, self.at = clock, 50.0, 1000.0, 0.0

    def joules(self) -> float:
        self.j += self.watts * (self.clock.t - self.at)
        self.at = self.clock.t
        return self.j


def test_energy_per_item_subtracts_the_idle_draw():
    clock = FakeClock()
    counter = SyntheticCounter(clock)
    meter = EnergyMeter(counter, clock=clock, sleep=clock.sleep)
    assert meter.measure_idle(2.0) == pytest.approx(50.0)      # idle: 50 W
    w = meter.start()
    counter.watts = 250.0                                       # busy: 250 W for 4 s serving 1000 items
    clock.sleep(4.0)
    e = meter.stop(w, 1000)
    assert e["joules"] == pytest.approx(1000.0) and e["net_j"] == pytest.approx(800.0)
    assert e["j_per_item"] == pytest.approx(0.8) and e["idle_w"] == pytest.approx(50.0)


def test_rapl_counter_follows_the_wrap_around(tmp_path):
    zone = tmp_path / "intel-rapl:0"
    (tmp_path / "intel-rapl:0:0").mkdir(parents=True)           # a subzone: part of the package, not added
    zone.mkdir(exist_ok=True)
    (zone / "max_energy_range_uj").write_text("1000000\n")
    (zone / "energy_uj").write_text("900000\n")
    counter, source = open_counter("cpu", powercap=tmp_path)
    assert source == "rapl:intel-rapl:0" and counter.joules() == 0.0
    (zone / "energy_uj").write_text("100000\n")                 # wrapped: 0.1 J to the top, 0.1 J after
    assert counter.joules() == pytest.approx(0.2)
    assert isinstance(counter, RaplCounter)
    assert open_counter("cpu", powercap=tmp_path / "none")[1].startswith("unavailable because")


# ---------------------------------------------------------------- soak
def test_soak_growth_and_drift_from_windows():
    windows = [{"t_s": float(t), "requests": 100, "p50_ms": 1.0, "p99_ms": 2.0 if t < 40 else 3.0,
                "rss_bytes": 500_000_000 + (0 if t == 10 else 2_000_000 * t)} for t in range(10, 70, 10)]
    windows[0]["rss_bytes"] = 900_000_000                        # warm-up allocations: not in the slope
    r = summarize(windows, 60.0, 10.0, errors=0, first_error=None)
    assert r.rss_slope_bytes_per_min == pytest.approx(2_000_000 * 60)
    assert r.p99_drift == pytest.approx(0.5) and r.first_p99_ms == 2.0 and r.last_p99_ms == 3.0
    assert slope_per_min([0.0], [1.0]) is None


class Leaky:
    """A test lane that leaks on purpose: each call keeps 64 KiB (written, so resident) and takes ~1 ms (``sleep``:
    the real one, or a fake clock's, which moves that clock instead), then runs the real ``lane``."""

    def __init__(self, lane, leak: bool, sleep=time.sleep) -> None:
        self.lane, self.leak, self.kept, self.sleep = lane, leak, [], sleep

    def run(self, index):
        if self.leak:
            self.kept.append(np.ones(16384, np.float32))
        self.sleep(0.001)
        return self.lane.run(index)

    def describe(self):
        return self.lane.describe()

    def compiles(self):
        return None

    def close(self):
        self.lane.close()


class StepClock:
    """A fake clock that moves only when the model 'sleeps': a soak of 30 clock seconds in a few real ones."""

    def __init__(self, step_s: float) -> None:
        self.t, self.step_s = 0.0, step_s

    def __call__(self) -> float:
        return self.t

    def sleep(self, _s: float) -> None:
        self.t += self.step_s


def soak_row(session, leak: bool, seconds: float, window_s: float, clock: StepClock | None = None) -> dict:
    pool = stage(items(), {"x": 0})
    engine = Batcher(lambda _i: Leaky(session.lane(pool, {"x": 0}), leak, clock.sleep if clock else time.sleep),
                     {"y": 0})
    try:
        result = soak(engine, 32, seconds, window_s, **({"clock": clock} if clock else {}))
    finally:
        engine.close()
    from dataclasses import asdict

    return {"variant_id": "v", "serving": {"batching": {"judged": "none"}, "runs": [], "soak": asdict(result)}}


@pytest.mark.parametrize("leak", [True, False], ids=["leaking", "clean"])
def test_soak_fails_a_leaking_model_and_passes_a_clean_one(session, leak):
    row = soak_row(session, leak, seconds=3.0, window_s=0.5)
    s = row["serving"]["soak"]
    assert s["requests"] > 500 and s["errors"] == 0 and len(s["windows"]) >= 5
    verdict = {r.check: r for r in check_serving(row, {})}["soak_rss_mb_per_min_max"]
    assert verdict.passed is not leak, s["rss_slope_bytes_per_min"]
    if leak:
        assert s["rss_slope_bytes_per_min"] > 100 * 2**20 and "soak_rss_mb_per_min" in verdict.message


@pytest.mark.parametrize("leak", [True, False], ids=["leaking", "clean"])
def test_a_30_s_soak_in_the_default_5_s_windows(session, leak):
    """The spec's default soak (30 s in 5 s windows) on a fake clock that moves 10 ms a call: six whole windows,
    3,000 calls, the leak's slope read across windows as long as the real ones."""
    row = soak_row(session, leak, seconds=30.0, window_s=5.0, clock=StepClock(0.01))
    s = row["serving"]["soak"]
    assert len(s["windows"]) == 6 and s["requests"] == 3000 and s["errors"] == 0
    assert {r.check: r for r in check_serving(row, {})}["soak_rss_mb_per_min_max"].passed is not leak


# ---------------------------------------------------------------- check
def _row(p99: float | None, peak: float | None = 300.0, energy: dict | None = None) -> dict:
    run = {"scenario": "server", "batching": "dynamic", "target_qps": 100.0, "p99_ms": p99, "p99_bound_ms": 20.0,
           "validity": "INVALID", "energy": energy}
    return {"variant_id": "v", "serving": {
        "batching": {"judged": "dynamic"}, "energy": {"unavailable": "unavailable because no counter"},
        "runs": [run, {**run, "batching": "none", "p99_ms": 99.0}],
        "peak": [{"batching": "dynamic", "qps": peak}, {"batching": "none", "qps": 1000.0}], "soak": None}}


def test_check_judges_the_deployed_engine_against_the_bound_and_budgets():
    results = {r.check: r for r in check_serving(_row(p99=12.0), {"serving_peak_qps_min": 250})}
    assert results["serving.server@100qps"].passed         # the unbatched comparison run (99 ms) is not judged
    assert len([c for c in results if c.startswith("serving.server")]) == 1
    assert results["serving_peak_qps_min"].passed
    results = {r.check: r for r in check_serving(_row(p99=25.0, peak=200.0), {"serving_peak_qps_min": 250})}
    assert not results["serving.server@100qps"].passed and "p99 25 ms at 100 QPS (dynamic batching), bound 20 ms" \
        in results["serving.server@100qps"].message
    assert "no p99" in check_serving(_row(p99=None), {})[0].message
    assert not results["serving_peak_qps_min"].passed and "would pass with" in results["serving_peak_qps_min"].message


def test_check_energy_budget_warns_where_energy_is_unavailable_and_judges_it_where_read():
    r = {x.check: x for x in check_serving(_row(12.0), {"energy_j_per_item_max": 0.5})}["energy_j_per_item_max"]
    assert r.warning and "unavailable because" in r.message
    read = _row(12.0, energy={"j_per_item": 0.7})
    r = {x.check: x for x in check_serving(read, {"energy_j_per_item_max": 0.5})}["energy_j_per_item_max"]
    assert not r.passed and not r.warning
    assert check_serving({"variant_id": "v", "serving": {"error": "RuntimeError: x"}}, {})[0].passed is False


def test_headline_figures_read_the_deployed_engine():
    from optbench.measure.serving.figures import headline

    h = headline(_row(12.0, peak=300.0, energy={"j_per_item": 0.25})["serving"])
    assert h == {"serving_peak_qps": 300.0, "energy_j_per_item": 0.25, "soak_rss_mb_per_min": None,
                 "soak_p99_drift": None}
    assert headline({"error": "x"})["serving_peak_qps"] is None and headline(None)["energy_j_per_item"] is None


# ---------------------------------------------------------------- the spec section
BAD_SERVING = [
    ("server without bound", "serving: {qps: [10]}", ["field 'serving'", "expected serving.p99_ms, the bound"]),
    ("server without qps", "serving: {p99_ms: 20}", ["field 'serving'", "expected target QPS values"]),
    ("qps as text", "serving: {qps: ['10'], p99_ms: 20}", ["serving.qps.0", "number"]),
    ("negative qps", "serving: {qps: [-5], p99_ms: 20}", ["serving.qps.0", "greater than 0"]),
    ("unknown key", "serving: {qps: [10], p99_ms: 20, max_batch: 8}", ["unknown key 'max_batch'"]),
    ("unknown scenario", "serving: {scenario: sever, qps: [10], p99_ms: 20}", ["serving.scenario", "'sever'"]),
    ("bad batching", "serving: {qps: [1], p99_ms: 20, dynamic_batching: {max_batch: 0}}",
     ["serving.dynamic_batching.max_batch", "greater than 0"]),
    ("sizes twice", "serving: {qps: [1], p99_ms: 20, dynamic_batching: {sizes: [2, 2]}}",
     ["serving.dynamic_batching", "each dynamic_batching.sizes value once"]),
    ("qps without server", "serving: {scenario: offline, qps: [10]}", ["expected 'server' in serving.scenario", "serving.qps is set"]),
]


@pytest.mark.parametrize("desc,text,fragments", BAD_SERVING, ids=[b[0] for b in BAD_SERVING])
def test_bad_serving_values_exit_2_with_one_line(tmp_path, capsys, desc, text, fragments):
    from optbench.cli import main

    path = write_spec(tmp_path, TINY + text + "\n")
    code = main(["plan", str(path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, (desc, err)
    for frag in fragments:
        assert frag in err[0], (frag, err[0])


def test_serving_defaults_fit_ci():
    s = ServingSpec(qps=[10], p99_ms=20)
    assert s.scenarios == ["server"] and s.min_duration_ms == 1000 and s.min_query_count == 32
    assert ServingSpec(scenario=["soak"]).soak_s == 30.0


# ---------------------------------------------------------------- end to end
QUICK_SERVING = """
serving:
  scenario: [server, offline]
  qps: [50, 200, 800]
  p99_ms: 20
  dynamic_batching: {max_batch: 8, max_delay_ms: 2}
  peak: true
  peak_probes: 6
  concurrency: [1, 2, 4]
  concurrency_s: 0.5
  idle_s: 0.2
"""


@pytest.mark.slow
def test_run_with_serving_end_to_end(tmp_path, cache_dir, capsys):
    from optbench.cli import main

    spec = write_spec(tmp_path, TINY.replace("batch_size: [1]", "batch_size: [1, 8]") + QUICK_SERVING +
                      "budgets: {'*': {serving_peak_qps_min: 1}}\n")
    run_dir = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run_dir), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "serving (MLPerf LoadGen" in out and "peak at bound" in out, out  # QPS and p99 in the terminal
    rows = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    ok = [r for r in rows if r.get("status") == "ok"]
    assert len(ok) == 2
    for row in ok:
        s = row["serving"]
        assert "error" not in s, s.get("error")
        assert row["latency_ms_p50"] > 0                    # the single-stream columns are unchanged
        assert {(r["scenario"], r["batching"]) for r in s["runs"]} == \
            {(sc, b) for sc in ("server", "offline") for b in ("none", "dynamic")}
        assert all(r["validity"] in ("VALID", "INVALID") for r in s["runs"])
        assert [p["batching"] for p in s["peak"]] == ["none", "dynamic"]
        assert len(s["concurrency"]) == 6 and s["energy"]
    assert main(["check", str(run_dir)]) in (0, 1)
    html = (run_dir / "report.html").read_text()
    assert "Serving: p99 latency under load" in html and "Serving: throughput vs latency over concurrency" in html
    from optbench.report.build import load_run
    from optbench.report.render import summary_lines

    run = load_run(run_dir)
    run["constraints"] = ["serving_peak_qps >= 1"]     # 'what to ship' under a serving constraint
    assert all("ship " in line for line in summary_lines(run))
    run["constraints"] = ["serving_peak_qps >= 1e12"]
    assert all("no variant" in line for line in summary_lines(run))
