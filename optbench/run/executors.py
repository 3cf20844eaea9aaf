"""Where a sweep's variants run: ``local`` (worker processes on this machine, ``--jobs N`` at a time) or ``ray``
(Ray over a cluster's nodes and GPUs). Either way each variant runs in a fresh worker process with the spec's time
limit and memory cap, timing windows stay exclusive (:mod:`optbench.run.node_locks`, per node), and only the
driver appends rows to ``results.jsonl``: rows come back to it as variants finish.

Ray: a pool of warm runners (Ray actors) does the work. A runner imports optbench once and starts its forkserver
(the heavy libraries preloaded) when it starts; each variant it is given is still a fresh process forked from that
server, as locally, so a variant's fixed cost under Ray is a Ray call and a fork, not a Ray worker's start and
imports. A CPU runner holds one CPU; a CUDA runner one CPU and 1/:data:`SLOTS_PER_GPU` of a GPU (two variants of a
GPU may build side by side; the GPU's timing lock keeps their timing windows apart). The pool's size follows the
cluster (:func:`pool_sizes`), for any number of nodes and GPUs. A variant whose runner died (its node lost) is
retried once on another runner, marked ``retried``; lost twice it becomes a failed row. Every node must see the
run directory, the spec's folder and the artifact cache at the same paths (one machine, or a shared filesystem):
the reference outputs are computed once, by the driver's prepare step, into the run directory, and every node reads
them from there.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import socket
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optbench.clock as clock

OnRow = Callable[[Any, dict], None]
RunOne = Callable[[Any], dict]


def node_info() -> dict[str, Any]:
    return {"node": socket.gethostname()}


SLOTS_PER_GPU = 2  # CUDA variants in flight per GPU: one builds while the other times (its timing lock keeps them apart)


class GpuSlots:
    """Which GPU a CUDA variant runs on: the one with the most free slots (the lower index on a tie); a variant
    waits while every GPU is full."""

    def __init__(self, gpus: list[str], per_gpu: int = SLOTS_PER_GPU) -> None:
        self.order = list(gpus)
        self.free = {g: per_gpu for g in gpus}
        self.cond = threading.Condition()

    def take(self) -> str:
        with self.cond:
            while not any(self.free.values()):
                self.cond.wait()
            g = max(self.order, key=lambda k: (self.free[k], -self.order.index(k)))
            self.free[g] -= 1
            return g

    def give(self, g: str) -> None:
        with self.cond:
            self.free[g] += 1
            self.cond.notify()


def _is_cuda(v: Any) -> bool:
    return str(v.device).startswith("cuda")


def run_local(variants: list, run_one: RunOne, on_row: OnRow, jobs: int, on_start: Callable[[Any], None],
              gpus: list[str] | None = None) -> None:
    """``jobs`` variants at a time, each in its own worker process (threads here only wait for them); with more
    than one GPU, CUDA variants spread over them, :data:`SLOTS_PER_GPU` per GPU, each process seeing its GPU only."""
    spread = len(gpus or []) > 1 and any(_is_cuda(v) for v in variants)
    if jobs <= 1 and not spread:
        for v in variants:
            on_start(v)
            on_row(v, {**run_one(v), **node_info()})
        return
    slots = GpuSlots(list(gpus or [])) if spread else None

    def one(v: Any) -> dict:
        if slots is None or not _is_cuda(v):
            return run_one(v)
        g = slots.take()
        try:
            return run_one(v, g)
        finally:
            slots.give(g)

    workers = max(jobs, SLOTS_PER_GPU * len(gpus or [])) if spread else jobs
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="optbench-variant") as pool:
        futures = {}
        for v in variants:
            futures[pool.submit(one, v)] = v
            on_start(v)
        try:
            for f in cf.as_completed(futures):
                on_row(futures[f], {**f.result(), **node_info()})
        except KeyboardInterrupt:
            from optbench.run.supervise import kill_live_workers

            for f in futures:
                f.cancel()
            kill_live_workers()
            raise


def pool_sizes(n_cpu: int, n_cuda: int, cluster_cpus: float, cluster_gpus: float,
               per_gpu: int = SLOTS_PER_GPU) -> tuple[int, int]:
    """How many (CPU, CUDA) runners a sweep starts: no more than it has variants of each kind, SLOTS_PER_GPU per
    GPU of the cluster, one CPU each, and at least one CPU runner while CPU variants wait."""
    cuda = min(n_cuda, int(cluster_gpus * per_gpu)) if cluster_gpus >= 1 else 0
    cpus = int(cluster_cpus)
    if n_cpu and cuda >= cpus:
        cuda = max(0, cpus - 1)
    cpu = min(n_cpu, max(cpus - cuda, 1)) if n_cpu else 0
    return cpu, cuda


class _Runner:
    """A Ray actor that runs variants one at a time, each in a fresh process of its warm forkserver."""

    def __init__(self, preload: list[str] | None = None) -> None:
        import ray

        from optbench.run.supervise import warm_forkserver

        ctx = ray.get_runtime_context()
        here = next((n for n in ray.nodes() if n["NodeID"] == ctx.get_node_id()), {})
        # every GPU of the node: the timing thread's reserved cores are chosen per GPU of the node
        os.environ["OPTBENCH_GPUS"] = ",".join(str(i) for i in range(int(here.get("Resources", {}).get("GPU", 0))))
        self.gpus = [str(g) for g in ray.get_gpu_ids()]
        self.where = {**node_info(), "ray_node_id": ctx.get_node_id(), "gpu_ids": self.gpus or None}
        # a job's process would otherwise run Ray's worker script again as __mp_main__ (multiprocessing does that for
        # a script-started parent), and a fork of a process holding Ray's libraries costs ~0.7 s, against ~0.02 s
        import sys

        sys.modules["__main__"].__dict__.pop("__file__", None)
        warm_forkserver(preload)  # the sweep's backends' libraries (every backend's where not given)

    def run(self, job: dict, log: str) -> dict:
        from optbench.run.supervise import run_job
        from optbench.spec.models import MeasureSettings

        if self.gpus:
            job = {**job, "gpu": ",".join(self.gpus)}  # the variant's process sees this runner's GPU only
        Path(log).parent.mkdir(parents=True, exist_ok=True)
        # where each variant runs now, for whoever watches the run directory (it goes when the variant ends)
        running = Path(job["run_dir"]) / "work" / "running" / f"{job['variant']['id']}.json"
        running.parent.mkdir(parents=True, exist_ok=True)
        running.write_text(json.dumps(self.where))
        try:
            row = run_job(job, MeasureSettings.model_validate(job["spec"]["measure"]), Path(log))
        finally:
            running.unlink(missing_ok=True)
        return {**row, **self.where}


def run_ray(variants: list, make_job: Callable[[Any], dict], on_row: OnRow, on_start: Callable[[Any], None],
            address: str | None, log_of: Callable[[Any], Path]) -> dict:
    """Every variant on a pool of warm Ray runners; returns what the run should record about the cluster."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[1]),
                                                                                       os.environ.get("PYTHONPATH", "")] if p)}})
    try:
        total = ray.cluster_resources()
        queues = {False: deque(v for v in variants if not _is_cuda(v)), True: deque(v for v in variants if _is_cuda(v))}
        n_cpu, n_cuda = pool_sizes(len(queues[False]), len(queues[True]), total.get("CPU", 0), total.get("GPU", 0))
        cluster = {"executor": "ray", "address": address or "local (started by optbench)", "ray": ray.__version__,
                   "runners": {"cpu": n_cpu, "cuda": n_cuda},
                   "nodes": [{"node_id": n["NodeID"], "host": n.get("NodeManagerHostname"), "alive": n["Alive"],
                              "resources": n.get("Resources", {})} for n in ray.nodes()]}

        def fail_queued(cuda: bool, stage: str, error: str) -> None:
            while queues[cuda]:
                on_row(queues[cuda].popleft(), {"status": "failed", "failed_stage": stage, "error": error,
                                                "retried": False})

        if not n_cuda:
            fail_queued(True, "placement", f"the Ray cluster has no GPU for a CUDA variant (its resources: {dict(total)})")
        actor = ray.remote(max_restarts=0, max_task_retries=0)(_Runner)
        preload = make_job(variants[0]).get("preload") if variants else None

        def start(cuda: bool):
            return actor.options(num_cpus=1, num_gpus=1 / SLOTS_PER_GPU if cuda else 0).remote(preload)

        idle = {False: [start(False) for _ in range(n_cpu)], True: [start(True) for _ in range(n_cuda)]}
        alive = {k: len(x) for k, x in idle.items()}
        pending: dict[Any, tuple[Any, Any, bool]] = {}  # ref: (variant, runner, cuda)
        retried: set = set()  # variants running again after their runner was lost
        lost_errors = tuple(e for e in (getattr(ray.exceptions, "RayActorError", None),
                                        getattr(ray.exceptions, "ActorUnavailableError", None)) if e)

        def dispatch() -> None:
            for cuda in (True, False):
                while queues[cuda] and idle[cuda]:
                    v, runner = queues[cuda].popleft(), idle[cuda].pop()
                    job = {**make_job(v), "dispatched_at": clock.wall()}
                    pending[runner.run.remote(job, str(log_of(v)))] = (v, runner, cuda)
                    on_start(v)

        dispatch()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                v, runner, cuda = pending.pop(ref)
                again = v.id in retried
                try:
                    row = ray.get(ref)
                    idle[cuda].append(runner)
                except lost_errors as e:  # the runner or its node died: not the variant's fault
                    alive[cuda] -= 1
                    why = f"{e.__class__.__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                    if not again:  # once more, first in its queue
                        retried.add(v.id)
                        queues[cuda].appendleft(v)
                    if alive[cuda] == 0 and queues[cuda]:  # the last runner of its kind: a new one, if a node can hold it
                        if ray.cluster_resources().get("GPU" if cuda else "CPU", 0) >= (1 / SLOTS_PER_GPU if cuda else 1):
                            idle[cuda].append(start(cuda))
                            alive[cuda] += 1
                        else:
                            fail_queued(cuda, "lost with its node", f"no node of the Ray cluster is left to run it ({why})")
                    if not again:
                        continue
                    row = {"status": "failed", "failed_stage": "lost with its node",
                           "error": f"the variant's Ray runner was lost twice (node or worker died): {why}"}
                except ray.exceptions.RayError as e:  # the runner itself raised: this variant fails, the runner stays
                    idle[cuda].append(runner)
                    row = {"status": "failed", "failed_stage": "executor",
                           "error": f"the Ray runner raised {e.__class__.__name__}: {str(e).splitlines()[0][:300]}"}
                row["retried"] = again
                on_row(v, row)
            dispatch()
        return cluster
    finally:
        if started:
            ray.shutdown()
