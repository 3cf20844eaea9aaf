"""The process of one serving lane (``serving.lane_processes``): the variant's session opened again from the run's
files, as ``optbench deploy`` opens it, the serving samples staged as the serving process staged them, one lane
made of it, served over the socket :class:`~optbench.measure.serving.process_lane.ProcessLane` holds."""

from __future__ import annotations

from typing import Any


def open_lane(job: dict) -> tuple[Any, Any]:
    """(the lane, what closes its session) for ``job`` (:func:`optbench.run.variant.lane_source`'s, with the lane's ``samples`` and
    ``cuda_graphs``)."""
    from optbench.measure.serving.batcher import stage
    from optbench.measure.serving.run import serving_inputs
    from optbench.run.context import Context
    from optbench.run.variant import open_session

    ctx = Context.of_job(job)
    session, _v, items, _facts = open_session(ctx, job["variant"], job.get("recorded"))
    try:
        samples, in_axes, _out_axes, _fixed, _rename = serving_inputs(ctx, session, items, job["samples"])
        lane = session.lane(stage(samples, in_axes), in_axes, job["cuda_graphs"])
    except BaseException:
        session.close()
        raise
    return lane, session.close


def main(fd: int) -> int:
    from optbench.measure.serving.process_lane import serve_lane

    return serve_lane(fd, open_lane)
