"""One launcher interface: a sweep's variants through the inline launcher (in the test's process) and the process
launcher (a worker process each) give the same rows."""

import json

import pytest

from optbench.errors import OptbenchError
from tests.conftest import ROOT, write_spec

JUDGED = """\
name: launched
model: {source: python, entrypoint: "%s", kwargs: {epochs: 1, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 16, eval: 32}
variants: {precision: [fp32, fp16], batch_size: [1, 4]}
backends: [onnxruntime]
measure: {mode: judge}
""" % (ROOT / "experiments" / "models" / "digits.py:build")

# where and how a variant's process ran, not what it measured
PROCESS_COLUMNS = {"exit_code", "signal", "start_s", "wall_s", "node", "idle_rss_bytes", "peak_rss_bytes",
                   "rss_delta_bytes", "build_s", "export_s"}


def _sweep(tmp_path, executor: str) -> dict[str, dict]:
    from optbench.run.sweep import RunOptions, run_sweep
    from optbench.specfile.load import load_spec
    from optbench.store import final_rows

    spec_path = write_spec(tmp_path, JUDGED)
    run = run_sweep(load_spec(spec_path), RunOptions(run_dir=tmp_path / executor, spec_path=spec_path, quiet=True,
                                                     executor=executor))
    assert json.loads((run / "env.json").read_text())["cluster"]["executor"] == executor
    return final_rows(run)


def _measured(row: dict) -> dict:
    # the process's memory cap and the resident size its memory delta counts from; whether the artifact was found
    # in the cache (the second sweep finds the first's)
    settings = {k: v for k, v in (row["settings"] or {}).items()
                if k not in ("memory_cap", "host_memory") and not k.endswith("_cached")}
    return {k: v for k, v in row.items() if k not in PROCESS_COLUMNS} | {"settings": settings}


@pytest.mark.slow  # 20-70 s on two cores
def test_one_sweep_gives_the_same_rows_inline_and_in_worker_processes(tmp_path):
    inline = _sweep(tmp_path, "inline")
    local = _sweep(tmp_path, "local")
    assert sorted(inline) == sorted(local) and len(inline) == 4
    assert all(r["status"] == "ok" and r["drift_rel_l2"] is not None for r in inline.values())
    assert local[next(iter(local))]["exit_code"] == 0 and inline[next(iter(inline))]["exit_code"] is None
    for vid in inline:
        assert _measured(inline[vid]) == _measured(local[vid]), vid


def test_an_unknown_executor_is_one_line():
    from optbench.run.launchers import launcher

    with pytest.raises(OptbenchError, match="unknown executor 'slurm'"):
        launcher("slurm")
