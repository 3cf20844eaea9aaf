"""``measure.mode: judge``: every variant built and judged as in a full run, nothing timed, one process each."""

import json

import pytest

from optbench.cli import main
from tests.conftest import TINY, write_spec


@pytest.mark.slow  # over 9 s on the 2-core VM: out of the quick loop
def test_judge_mode_judges_like_a_full_run_and_times_nothing(tmp_path, cache_dir, capsys):
    judged = TINY.replace("rounds: 1, processes: 1}", "rounds: 3, processes: 3, mode: judge}")
    assert "mode: judge" in judged
    spec = write_spec(tmp_path, judged.replace("precision: [fp32]", "precision: [fp32, int8]"))
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run)]) == 0
    out = capsys.readouterr().out
    rows = [json.loads(x) for x in (run / "results.jsonl").read_text().splitlines() if x.strip()]
    assert {r["precision"] for r in rows} == {"fp32", "int8"} and {r["status"] for r in rows} == {"ok"}
    for r in rows:
        assert r["drift_rel_l2"] is not None and r["task_accuracy"] is not None  # judged
        assert r["latency_ms_p50"] is None and not r.get("samples_ms") and not r.get("rounds")  # not timed
        assert r["settings"]["timing"] == "not timed (measure.mode: judge): accuracy only"
    # processes: 3 asks for two more timing processes per variant; judge mode starts none
    assert not list((run / "logs").glob("*.p1.log")) and not list((run / "logs").glob("*.p2.log"))
    assert "not timed (measure.mode: judge): " in out and " of 2 variant(s) pass every accuracy check" in out, out
    assert main(["check", str(run)]) in (0, 1)  # the verdicts, without a latency to gate
    assert main(["report", str(run)]) == 0
