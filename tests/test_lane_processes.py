"""Serving lanes in processes of their own (``serving.lane_processes``): a run served through them end to end, and
a lane's process answering as the variant's session in the serving process answers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from optbench.cli import main
from tests.conftest import TINY, write_spec

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is not installed (the 'serving' extra)")
pytest.importorskip("torch", reason="torch is not installed")

SPEC = TINY.replace("backends: [onnxruntime]", "backends: [{name: torch, device: cpu}]") + """\
serving:
  scenario: [offline]
  instances: 2
  lane_processes: true
  dynamic_batching: {max_batch: 4, max_delay_ms: 1}
  compare_unbatched: false
  min_duration_ms: 300
  min_query_count: 32
  samples: 16
  idle_s: 0.1
"""


@pytest.mark.slow  # a run, and two lane processes that import torch and open the variant again
def test_lanes_in_processes_serve_a_run_and_answer_as_its_session(tmp_path, cache_dir):
    from optbench.deploy.measure import _rss_with_lanes
    from optbench.measure.memory import current_rss_bytes
    from optbench.measure.serving.batcher import stage
    from optbench.measure.serving.process_lane import ProcessLane, live_pids
    from optbench.measure.serving.run import serving_inputs
    from optbench.plan import plan
    from optbench.run.context import Context
    from optbench.run.variant import lane_source, open_session
    from optbench.specfile.load import load_spec

    spec_path, run = write_spec(tmp_path, SPEC), tmp_path / "run"
    assert main(["run", str(spec_path), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    row = json.loads((run / "results.jsonl").read_text().splitlines()[0])
    assert row["status"] == "ok", row.get("error")
    served = row["serving"]
    assert "error" not in served, served.get("error")
    lanes = served["lanes"]["dynamic"]
    assert lanes["instances"] == 2 and "process of its own" in lanes["process"]
    assert set(lanes["warm_ms"][0]) == set(lanes["warm_ms"][1]) == {"1", "2", "4"}  # each process warmed each size
    offline = [r for r in served["runs"] if r["scenario"] == "offline"]
    assert offline and offline[0]["errors"] == 0 and offline[0]["achieved_qps"] > 0

    # a lane's process, opened from the run's files, answers each pool index as the session opened here does
    spec = load_spec(spec_path)
    v = next(x for x in plan(spec) if x.status == "planned")
    job = {"spec": spec.model_dump(mode="json"), "spec_dir": str(spec_path.parent), "run_dir": str(run),
           "cache_dir": str(cache_dir)}
    ctx = Context.of_job(job)
    session, _v, items, _ = open_session(ctx, v.to_dict())
    lane = ProcessLane(lane_source(ctx, v), 0, samples=16)
    try:
        # the lane's process counts in the engine's memory (deploy's memory poll) while it serves
        assert live_pids() == {lane.proc.pid}
        assert _rss_with_lanes() > current_rss_bytes() + 50 * 2**20  # a Python with torch and the module loaded
        samples, in_axes, _out, _fixed, _rename = serving_inputs(ctx, session, items, 16)
        here = session.lane(stage(samples, in_axes), in_axes)
        for index in ([0], [3, 1, 15, 2], [7, 7]):
            theirs, ours = lane.run(np.array(index)), here.run(np.array(index))
            assert set(theirs) == set(ours)
            for name in ours:
                np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-5, atol=1e-6)
        with pytest.raises(RuntimeError, match="in the lane's process"):
            lane.run(np.array([16]))  # past the pool: the process's own error, said here
        np.testing.assert_allclose(lane.run(np.array([0]))[next(iter(ours))], here.run(np.array([0]))[next(iter(ours))],
                                   rtol=1e-5, atol=1e-6)  # and it serves on after it
    finally:
        lane.close()
        session.close()
    assert lane.proc.returncode == 0 and live_pids() == set()
