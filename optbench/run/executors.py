"""Where a sweep's variants run: ``local`` (worker processes on this machine, ``--jobs N`` at a time) or ``ray``
(Ray tasks over a cluster's nodes and GPUs). Either way each variant runs in a fresh worker process with the
spec's time limit and memory cap, timing windows stay exclusive (:mod:`optbench.measure.exclusive`, per node), and only
the driver appends rows to ``results.jsonl``: rows come back to it as variants finish.

Ray: each variant is a task (``max_calls=1``: a fresh Ray worker per task) that starts optbench's own worker
process on its node. A CPU variant asks for one CPU, a CUDA variant also for half a GPU (two variants of a
GPU may build side by side; the GPU's timing lock keeps their timing windows apart). A task lost with its node
is retried once, marked ``retried``; lost twice it becomes a failed row. Every node must see the run
directory, the spec's folder and the artifact cache at the same paths (one machine, or a shared filesystem):
the reference outputs are computed once, by the driver's prepare step, into the run directory, and every node
reads them from there.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


def run_local(variants: list, run_one: RunOne, on_row: OnRow, jobs: int, on_start: Callable[[Any], None],
              gpus: list[str] | None = None) -> None:
    """``jobs`` variants at a time, each in its own worker process (threads here only wait for them); with more
    than one GPU, CUDA variants spread over them, :data:`SLOTS_PER_GPU` per GPU, each process seeing its GPU only."""
    spread = len(gpus or []) > 1 and any(str(v.device).startswith("cuda") for v in variants)
    if jobs <= 1 and not spread:
        for v in variants:
            on_start(v)
            on_row(v, {**run_one(v), **node_info()})
        return
    slots = GpuSlots(list(gpus or [])) if spread else None

    def one(v: Any) -> dict:
        if slots is None or not str(v.device).startswith("cuda"):
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


def _ray_task(job: dict, log: str) -> dict:
    """Runs on a Ray worker: the variant's optbench worker process(es), as the local executor runs them."""
    import ray

    from optbench.run.supervise import run_job
    from optbench.spec.models import MeasureSettings

    ctx = ray.get_runtime_context()
    gpus = [str(g) for g in ray.get_gpu_ids()]
    here = next((n for n in ray.nodes() if n["NodeID"] == ctx.get_node_id()), {})
    os.environ["OPTBENCH_GPUS"] = ",".join(str(i) for i in range(int(here.get("Resources", {}).get("GPU", 0))))
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    # where each variant runs now, for whoever watches the run directory (it goes when the variant ends)
    running = Path(job["run_dir"]) / "work" / "running" / f"{job['variant']['id']}.json"
    running.parent.mkdir(parents=True, exist_ok=True)
    where = {**node_info(), "ray_node_id": ctx.get_node_id(), "gpu_ids": gpus or None}
    running.write_text(json.dumps(where))
    try:
        row = run_job(job, MeasureSettings.model_validate(job["spec"]["measure"]), Path(log))
    finally:
        running.unlink(missing_ok=True)
    return {**row, **where}


def run_ray(variants: list, make_job: Callable[[Any], dict], on_row: OnRow, on_start: Callable[[Any], None],
            address: str | None, log_of: Callable[[Any], Path]) -> dict:
    """Every variant as a Ray task; returns what the run should record about the cluster."""
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in [str(Path(__file__).resolve().parents[1]),
                                                                                       os.environ.get("PYTHONPATH", "")] if p)}})
    try:
        cluster = {"executor": "ray", "address": address or "local (started by optbench)", "ray": ray.__version__,
                   "nodes": [{"node_id": n["NodeID"], "host": n.get("NodeManagerHostname"), "alive": n["Alive"],
                              "resources": n.get("Resources", {})} for n in ray.nodes()]}
        task = ray.remote(max_calls=1, max_retries=0)(_ray_task)
        pending: dict[Any, tuple[Any, bool]] = {}

        def submit(v, retried: bool) -> None:
            res = {"num_cpus": 1}
            if str(v.device).startswith("cuda"):
                res["num_gpus"] = 0.5
            ref = task.options(**res).remote(make_job(v), str(log_of(v)))
            pending[ref] = (v, retried)

        for v in variants:
            submit(v, False)
            on_start(v)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                v, retried = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as e:  # the task's worker or node died: not the variant's fault
                    why = f"{e.__class__.__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                    if not retried:
                        submit(v, True)
                        continue
                    row = {"status": "failed", "failed_stage": "lost with its node",
                           "error": f"the Ray task was lost twice (node or worker died): {why}"}
                row["retried"] = retried
                on_row(v, row)
        return cluster
    finally:
        if started:
            ray.shutdown()
