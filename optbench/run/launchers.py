"""Where a sweep's variants run, behind one call: a launcher's :meth:`~Launcher.launch` runs every variant's job and
hands each row to the sweep as it comes back, and returns what the run records about where they ran
(``env.json``'s ``cluster``).

- ``inline``: in this process, one variant after another: no fork, no time limit, no memory cap, one timing
  process a variant (for tests, where a crash may take the test with it);
- ``local`` (the default): each variant in a fresh worker process, ``--jobs N`` at a time, CUDA variants spread over
  the GPUs (:func:`optbench.run.executors.run_local`);
- ``ray``: a pool of warm Ray runners over a cluster's nodes and GPUs (:func:`optbench.run.executors.run_ray`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from optbench.errors import OptbenchError

EXECUTORS = ("local", "ray", "inline")


@dataclass(frozen=True)
class Jobs:
    """What a launcher is given by the sweep: each variant's job and log, the measure settings, and where rows go."""

    job_of: Callable[[Any], dict]
    log_of: Callable[[Any], Path]
    measure: Any  # MeasureSettings
    on_row: Callable[[Any, dict], None]
    on_start: Callable[[Any], None]
    note: Callable[[Any, str], None] = lambda v, text: None  # a variant's wait, while it lasts


class Launcher(Protocol):
    def launch(self, variants: list, jobs: Jobs) -> dict:
        """Run every variant's job, each row to ``jobs.on_row`` as it comes; returns where they ran."""
        ...


@dataclass(frozen=True)
class InlineLauncher:
    """Each variant's job in this process, in order."""

    def launch(self, variants: list, jobs: Jobs) -> dict:
        from optbench.run.executors import node_info
        from optbench.run.worker import run_inline

        if jobs.measure.mode == "full" and jobs.measure.processes > 1:
            raise OptbenchError(f"the inline executor times a variant in one process; measure.processes is "
                                f"{jobs.measure.processes} (use the local executor)")
        for v in variants:
            jobs.on_start(v)
            jobs.on_row(v, {**run_inline(jobs.job_of(v)), **node_info()})
        return {"executor": "inline"}


@dataclass(frozen=True)
class ProcessLauncher:
    """Each variant in a fresh worker process (with its time limit and memory cap), ``jobs`` at a time."""

    jobs: int = 1
    gpus: tuple[str, ...] = ()

    def launch(self, variants: list, jobs: Jobs) -> dict:
        from optbench.run.executors import run_local
        from optbench.run.supervise import run_job

        def run_one(v: Any, gpu: str | None = None) -> dict:
            return run_job({**jobs.job_of(v), "gpu": gpu}, jobs.measure, jobs.log_of(v),
                           lambda text: jobs.note(v, text))

        run_local(variants, run_one, jobs.on_row, self.jobs, jobs.on_start, list(self.gpus))
        return {"executor": "local", "jobs": self.jobs, "gpus": list(self.gpus)}


@dataclass(frozen=True)
class RayLauncher:
    """Every variant on a pool of warm Ray runners; ``address``: a cluster's, or None for a local Ray started here."""

    address: str | None = None

    def launch(self, variants: list, jobs: Jobs) -> dict:
        from optbench.run.executors import run_ray

        return run_ray(variants, jobs.job_of, jobs.on_row, jobs.on_start, self.address, jobs.log_of)


def launcher(executor: str, jobs: int = 1, gpus: list[str] | None = None, address: str | None = None) -> Launcher:
    """The launcher an executor's name stands for."""
    if executor == "local":
        return ProcessLauncher(jobs, tuple(gpus or ()))
    if executor == "ray":
        return RayLauncher(address)
    if executor == "inline":
        return InlineLauncher()
    raise OptbenchError(f"unknown executor {executor!r} (one of {', '.join(EXECUTORS)})")
