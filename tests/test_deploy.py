"""optbench deploy's search and answer on synthetic candidate rows (deterministic: no clock, nothing served),
its outputs (fragment, Triton configuration) and its one-line refusals of bad input."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optbench.cli import main
from optbench.deploy.answer import choose, p99_at, sizing
from optbench.deploy.fragment import triton_config
from optbench.deploy.row import CandidateRow, append, read
from optbench.deploy.space import Config, Grid, coarse, prepared_sizes
from optbench.deploy.strategy import Outcome, blocked_by, dominated, search

GRID = Grid(lanes=(1, 2), max_batch=(1, 8, 32), delays_ms=(0.5, 1.0, 2.0, 4.0, 8.0))


def simulate(gen, measure) -> list[tuple[str, list[Config]]]:
    """Drive a search as the driver and its workers do: each step's candidates in order, one that a smaller
    configuration's misfit blocks comes back skipped; ``measure(c)`` gives the others' outcomes."""
    steps, seen = [], {}
    msg = next(gen, None)
    while msg is not None:
        steps.append((msg.phase, list(msg.candidates)))
        got = {}
        for c in msg.candidates:
            got[c] = Outcome("skipped") if blocked_by(c, {**seen, **got}) else measure(c)
        seen.update(got)
        try:
            msg = gen.send(got)
        except StopIteration:
            break
    return steps


def peak_of(c: Config) -> float:
    """A synthetic serving curve: batching and a second lane help; the peak over the delay is highest at 2 ms."""
    base = 1000.0 * (3 if c.max_batch == 8 else 5 if c.max_batch == 32 else 1) * (1.5 if c.instances == 2 else 1)
    return base * (1 - 0.1 * abs(math.log2(c.max_delay_ms / 2.0))) if c.max_batch > 1 else base


def memory_of(c: Config) -> int:
    return (100 + 50 * c.instances + c.max_batch) * 2**20


def test_coarse_step_is_every_shape_at_the_middle_delay_smallest_first():
    got = coarse(["a"], GRID)
    assert [(c.instances, c.max_batch, c.max_delay_ms) for c in got] == [
        (1, 1, 0.0), (1, 8, 2.0), (1, 32, 2.0), (2, 1, 0.0), (2, 8, 2.0), (2, 32, 2.0)]
    assert prepared_sizes(32, "pow2") == (1, 2, 4, 8, 16, 32) and prepared_sizes(24, "ends") == (1, 24)
    assert prepared_sizes(24, "pow2") == (1, 2, 4, 8, 16, 24)


def test_cuda_graphs_are_an_axis_only_for_variants_whose_lanes_capture_them():
    grid = Grid(lanes=(2,), max_batch=(1, 32), delays_ms=(2.0,), cuda_graphs=(False, True))
    got = coarse(["compile", "ort"], grid, captures=frozenset({"compile"}))
    assert [(c.variant, c.max_batch, c.cuda_graphs) for c in got] == [
        ("compile", 1, False), ("compile", 1, True), ("compile", 32, False), ("compile", 32, True),
        ("ort", 1, False), ("ort", 32, False)]
    on = Config("compile", 2, 32, 2.0, "pow2", True)
    assert on.key.endswith("|graphs") and on.label().endswith("CUDA graphs") and on.shape != got[2].shape
    assert "cuda_graphs" not in GRID.to_dict() and grid.to_dict()["cuda_graphs"] == [False, True]
    # graphs off that did not fit blocks graphs on; graphs on that did not fit says nothing of graphs off
    assert blocked_by(on, {Config("compile", 2, 32, 2.0): Outcome("oom")}) is not None
    assert blocked_by(Config("compile", 2, 32, 2.0), {on: Outcome("oom")}) is None
    r = CandidateRow.of(on, "measured", peak_qps=10.0)
    assert r.cuda_graphs and r.config == on and CandidateRow.from_dict(r.to_dict()).config == on
    assert CandidateRow.from_dict({k: v for k, v in r.to_dict().items() if k != "cuda_graphs"}).config.key == \
        got[2].key   # a row written before the axis existed reads as graphs off


def test_the_answers_fragment_says_whether_its_lanes_replay_graphs():
    from optbench.deploy.fragment import serving_block
    from optbench.deploy.measure import serving_spec

    w = {"load_qps": 100.0, "instances": 2, "max_batch": 8, "max_delay_ms": 2.0, "sizes": [1, 2, 4, 8]}
    assert serving_block({**w, "cuda_graphs": True}, {"cuda_graphs": False}, 15.0)["cuda_graphs"] is True
    assert "cuda_graphs" not in serving_block({**w, "cuda_graphs": False}, {"cuda_graphs": True}, 15.0)
    assert serving_spec(Config("a", 2, 8, 2.0, "pow2", True), {}, 15.0).cuda_graphs is True
    assert serving_spec(Config("a", 2, 8, 2.0), {}, 15.0).cuda_graphs is False


def test_delay_bisection_finds_the_best_delay_and_dominated_shapes_are_not_refined():
    steps = simulate(search(["a"], GRID, trials=100, tolerance=0.1),
                     lambda c: Outcome("measured", peak_of(c), memory_of(c)))
    assert steps[0][0] == "coarse"
    refined = {(c.instances, c.max_batch) for phase, cs in steps if phase == "delay" for c in cs}
    # 2 lanes at batch 8 (4,500 QPS, 208 MiB) is beaten by 1 lane at batch 32 (5,000 QPS, 182 MiB): not refined;
    # 1 lane at batch 8 (3,000 QPS) uses the least memory of the batched ones, 2 lanes at 32 is the fastest
    assert refined == {(1, 8), (1, 32), (2, 32)}
    coarse_seen = {c: Outcome("measured", peak_of(c), memory_of(c)) for c in steps[0][1]}
    assert dominated(Config("a", 2, 8, 2.0), coarse_seen, 0.1) == Config("a", 1, 32, 2.0)
    delays = sorted({c.max_delay_ms for phase, cs in steps if phase == "delay" for c in cs if c.max_batch == 32
                     and c.instances == 2})
    assert delays == [1.0, 4.0]   # the middle (2 ms) was coarse; its neighbours told the bisection to stop there


def test_a_configuration_beaten_on_qps_with_no_more_memory_is_pruned():
    seen = {Config("a", 1, 8, 2.0): Outcome("measured", 1000.0, 200),
            Config("a", 2, 8, 2.0): Outcome("measured", 2000.0, 150),
            Config("b", 1, 8, 2.0): Outcome("measured", 1050.0, 100)}
    assert dominated(Config("a", 1, 8, 2.0), seen, 0.1) == Config("a", 2, 8, 2.0)
    assert dominated(Config("b", 1, 8, 2.0), seen, 0.1) is None      # the least memory: kept
    assert dominated(Config("a", 2, 8, 2.0), seen, 0.1) is None      # the fastest: kept
    close = {**seen, Config("a", 1, 8, 2.0): Outcome("measured", 1900.0, 200)}
    assert dominated(Config("a", 1, 8, 2.0), close, 0.1) is None     # within the peak search's own tolerance


def test_the_delay_bisection_walks_toward_the_better_side():
    def peak(c: Config) -> Outcome:  # rises with the delay up to 8 ms
        return Outcome("measured", 1000.0 * (1 + c.max_delay_ms) if c.max_batch > 1 else 500.0, 100)

    grid = Grid(lanes=(1,), max_batch=(8,), delays_ms=(0.5, 1.0, 2.0, 4.0, 8.0))
    steps = simulate(search(["a"], grid, trials=100, tolerance=0.1), peak)
    measured = [c.max_delay_ms for _, cs in steps for c in cs]
    assert measured == [2.0, 4.0, 8.0]   # 2 < 4: go up; then 4 and 8 (4 known): 8 wins; five delays, three runs


def test_what_does_not_fit_stops_larger_configurations_without_a_trial():
    def measure(c: Config) -> Outcome:
        if c.max_batch >= 8 and c.instances == 1 or c.instances == 2 and c.max_batch == 32:
            return Outcome("oom")
        return Outcome("measured", peak_of(c), memory_of(c))

    steps = simulate(search(["a"], GRID, trials=100, tolerance=0.1), measure)
    coarse_step = steps[0][1]
    assert len(coarse_step) == 6
    seen = {}
    for c in coarse_step:
        seen[c] = Outcome("skipped") if blocked_by(c, seen) else measure(c)
    statuses = {(c.instances, c.max_batch): o.status for c, o in seen.items()}
    # x1 b8 ran out of memory: x1 b32 and x2 b8, x2 b32 are no smaller, so none of them is measured
    assert statuses == {(1, 1): "measured", (1, 8): "oom", (1, 32): "skipped", (2, 1): "measured",
                        (2, 8): "skipped", (2, 32): "skipped"}
    assert [p for p, _ in steps] == ["coarse"]   # nothing batched fits: no delay to bisect


def test_the_trial_limit_stops_the_search_and_the_same_outcomes_replay_the_same_steps():
    def measure(c):
        return Outcome("measured", peak_of(c), memory_of(c))

    first = simulate(search(["a", "b"], GRID, trials=15, tolerance=0.1), measure)
    again = simulate(search(["a", "b"], GRID, trials=15, tolerance=0.1), measure)
    assert first == again
    assert sum(len(cs) for _, cs in first) == 15


def test_the_specs_own_configuration_is_measured_first_and_once():
    given = [Config("a", 2, 32, 2.0), Config("a", 3, 32, 2.0)]   # the first is also a coarse point
    steps = simulate(search(["a"], GRID, trials=100, tolerance=0.1, given=given),
                     lambda c: Outcome("measured", peak_of(c), memory_of(c)))
    assert steps[0] == ("given", given)
    assert Config("a", 2, 32, 2.0) not in steps[1][1] and len(steps[1][1]) == 5


# ---------------------------------------------------------------- the answer
def row(instances=1, max_batch=8, delay=2.0, peak=1000.0, p99=9.0, mem=200, j=None, status="measured", variant="a",
        probes=None) -> CandidateRow:
    c = Config(variant, instances, max_batch, delay)
    return CandidateRow.of(c, status, peak_qps=peak, peak_p99_ms=p99, memory_bytes=mem * 2**20, j_per_item=j,
                           probes=probes or [], sizes=list(c.batch_sizes()))


def test_the_answer_is_the_highest_qps_per_device_with_devices_headroom_and_runner_up():
    rows = [row(1, 8, 2.0, 1000.0), row(2, 8, 2.0, 2500.0, mem=300), row(2, 8, 4.0, 2400.0, mem=300),
            row(2, 32, 2.0, 2000.0, mem=400), row(1, 1, 0.0, 300.0)]
    a = choose(rows, qps=10_000, headroom=0.2)
    w = a["winner"]
    assert (w["instances"], w["max_batch"], w["max_delay_ms"]) == (2, 8, 2.0)
    assert w["devices"] == 5 and w["load_qps"] == 2000.0 and w["load_share"] == 0.8   # 10,000 / (0.8 x 2,500)
    r = a["runner_up"]   # the delay neighbour of the winner is not a runner-up: another shape is
    assert (r["instances"], r["max_batch"]) == (2, 32)
    assert r["devices"] == 7 and r["why"] == "needs 7 devices, not 5"
    assert a["frontier_p99"][0] == w["key"]


def test_ties_on_devices_are_decided_by_qps_then_memory():
    a = choose([row(1, 8, 2.0, 2000.0, mem=100), row(2, 8, 2.0, 2600.0, mem=300)], qps=1000)
    assert a["winner"]["instances"] == 2 and a["winner"]["devices"] == 1
    assert a["runner_up"]["why"].startswith("serves 2,000 QPS per device at the bound, 23% less than 2,600")


def test_a_runner_up_whose_peak_run_loadgen_called_invalid_says_so():
    from optbench.deploy.report import answer_lines

    rows = [row(1, 8, 2.0, 2000.0, mem=100), row(2, 8, 2.0, 2600.0, mem=300)]
    rows[0].peak_validity, rows[1].peak_validity = "INVALID", "VALID"
    record = {"asked": {"qps": 1000, "headroom": 0.2, "objective": "gpus"}, "settings": {"p99_ms": 15.0},
              "accuracy": {"passing": ["a"], "verdicts": {"a": []}}, "answer": {**choose(rows, qps=1000), "candidates": 2}}
    text = "\n".join(answer_lines(record))
    runner_up = next(line for line in text.splitlines() if line.startswith("runner-up:"))
    assert "2,000 QPS per device (LoadGen INVALID at that peak)" in runner_up
    assert "INVALID at that peak" not in text.replace(runner_up, "")   # the answer's own run was VALID


def test_memory_bound_max_devices_and_failures_keep_candidates_out_with_their_reason():
    rows = [row(2, 32, 2.0, 5000.0, mem=900), row(1, 8, 2.0, 1000.0, mem=100), row(1, 1, peak=0.0),
            row(2, 8, status="oom", peak=None)]
    rows[-1].reason = "RuntimeError: CUDA out of memory"
    a = choose(rows, qps=3000, memory_limit=512 * 2**20, max_devices=3)
    assert a["winner"] is None and a["closest"]["max_batch"] == 8 and a["closest"]["devices"] == 4
    v = a["verdicts"]
    assert "over the memory bound" in v[rows[0].config.key]
    assert v[rows[1].config.key] == "needs 4 devices, more than 3"
    assert v[rows[2].config.key].startswith("no QPS met the p99 bound")
    assert v[rows[3].config.key] == "oom: RuntimeError: CUDA out of memory"
    assert choose(rows, qps=3000, memory_limit=512 * 2**20, max_devices=4)["winner"]["max_batch"] == 8


def test_energy_objective_takes_the_lowest_joules_per_item():
    rows = [row(2, 32, peak=5000.0, j=0.004), row(1, 8, peak=2000.0, j=0.003), row(1, 1, peak=900.0, j=None)]
    a = choose(rows, qps=1000, objective="energy")
    assert a["winner"]["max_batch"] == 8 and a["runner_up"]["why"] == "uses 0.004 J per item, not 0.003"
    assert a["verdicts"][rows[2].config.key].startswith("no energy reading")
    assert a["frontier_energy"] == [rows[0].config.key, rows[1].config.key]


def test_p99_objective_reads_each_candidates_p99_at_the_load_it_would_carry():
    probes = [{"target_qps": q, "p99_ms": p, "met": True, "role": "search", "superseded": False}
              for q, p in ((500, 2.0), (1000, 3.0), (2000, 8.0))]
    slow = row(2, 32, peak=2000.0, p99=8.0, probes=probes)
    fast = row(1, 1, delay=0.0, peak=1000.0, p99=1.0,
               probes=[{"target_qps": 1000, "p99_ms": 1.0, "met": True, "role": "search", "superseded": False}])
    assert p99_at(slow, 900) == 3.0 and sizing(slow, 1800, 0.1).p99_at_load_ms == 8.0
    a = choose([slow, fast], qps=700, objective="p99")
    assert a["winner"]["max_batch"] == 1 and a["winner"]["p99_at_load_ms"] == 1.0
    assert a["runner_up"]["why"] == "its p99 at its load is 3 ms, not 1"


def test_candidate_rows_round_trip_and_a_torn_line_is_left_out(tmp_path):
    path = tmp_path / "candidates.jsonl"
    a, b = row(1, 8), row(2, 8, j=float("nan"))
    append(path, a)
    append(path, b)
    with open(path, "a") as f:
        f.write('{"variant_id": "a", "insta')
    got = read(path)
    assert list(got) == [a.config.key, b.config.key] and got[a.config.key] == a
    assert got[b.config.key].j_per_item is None   # written null (strict JSON)


def test_triton_config_holds_the_answers_lanes_batch_delay_and_sizes(tmp_path):
    w = numpy_helper.from_array(np.ones((16, 10), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 10])], [w])
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")
    text = triton_config("m", tmp_path / "m.onnx", {"max_batch": 8, "instances": 2, "max_delay_ms": 1.5,
                                                     "sizes": [1, 2, 4, 8]}, "cuda:0")
    for part in ('platform: "onnxruntime_onnx"', "max_batch_size: 8", 'name: "x"', "dims: [ 16 ]", "dims: [ 10 ]",
                 "count: 2", "kind: KIND_GPU", "preferred_batch_size: [ 2, 4, 8 ]",
                 "max_queue_delay_microseconds: 1500"):
        assert part in text
    assert 'name: "w"' not in text   # an initializer is no input


BAD = [("--qps", "-5", "--qps takes a finite number above 0"), ("--qps", "many", "--qps takes a number"),
       ("--p99-ms", "inf", "--p99-ms takes a finite number"), ("--max-gpus", "1.5", "--max-gpus takes a whole number"),
       ("--delays-ms", "30,40", "--delays-ms: no queue delay below half the p99 bound"),
       ("--sizes", "odd", "--sizes: 'odd' is not a size rule"), ("--lanes", "1,1", "--lanes: each value once"),
       ("--headroom", "1", "--headroom takes a finite number"), ("--memory-gb", "0", "--memory-gb takes a finite"),
       ("--from-run", "/nonexistent-run", "--from-run /nonexistent-run holds no results.jsonl"),
       ("--variants", "tensorrt.*", "--variants 'tensorrt.*' selects none of the variants"),
       ("--cuda-graphs", "yes", "--cuda-graphs takes off, on, or off,on")]


@pytest.mark.parametrize("flag,value,message", BAD, ids=[b[0] + "=" + b[1] for b in BAD])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, flag, value, message):
    args = ["deploy", "experiments/quickstart.yaml", "--qps", "100", "--p99-ms", "20", "--run-dir", str(tmp_path / "d")]
    i = args.index(flag) if flag in args else None
    if i is not None:
        args[i + 1] = value
    else:
        args += [flag, value]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "d").exists()


def test_the_energy_objective_without_an_energy_counter_is_one_line_before_anything_runs(tmp_path, capsys):
    from optbench.measure.serving.energy import open_counter

    counter, why = open_counter("cpu")
    if counter is not None:
        pytest.skip("this machine reads RAPL: the energy objective runs here")
    run = tmp_path / "d"
    assert main(["deploy", "experiments/quickstart.yaml", "--qps", "100", "--p99-ms", "20", "--objective", "energy",
                 "--run-dir", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--objective energy: the energy per item cannot be measured on cpu" in err
    assert not run.exists()
