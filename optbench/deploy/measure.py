"""A deploy step's candidates of one variant, measured in one worker process (forked as a run's variant process
is): the variant's session built once as its run built it, then each serving configuration served through the
serving machinery (:func:`optbench.measure.serving.run.serve`: lanes behind the dynamic batcher, the peak search
over LoadGen server runs, energy per item) inside the node's timing window, its memory polled while it serves.
Each candidate's row is appended as soon as it is measured; an out-of-memory candidate is a row with its reason."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import optbench.clock as clock
from optbench.deploy.row import CANDIDATES, CandidateRow, append
from optbench.deploy.space import Config
from optbench.deploy.strategy import Outcome, blocked_by

OOM_WORDS = ("out of memory", "outofmemory", "failed to allocate", "bad_alloc", "memoryerror", "cannot allocate",
             "cuda_error_out_of_memory", "not enough memory")


def out_of_memory(text: str) -> bool:
    t = text.lower().replace(" ", "")
    return any(w.replace(" ", "") in t for w in OOM_WORDS)


class MemoryPoll:
    """The process's memory, read every ``every_s`` on a thread while a configuration serves: resident memory on the
    CPU, the GPU memory NVML says this process holds on a CUDA device. ``peak`` is the largest reading."""

    def __init__(self, device: str, every_s: float = 0.02) -> None:
        from optbench.measure.serving.soak import nvml_process_bytes

        self.read, self.source = _rss_with_lanes, "resident memory of the serving process and its lanes' (VmRSS)"
        if device.startswith("cuda"):
            reader, note = nvml_process_bytes(device)
            if reader is not None:
                self.read, self.source = (lambda: reader() or 0), "GPU memory NVML reports for the serving process"
            else:
                self.source = f"resident memory of the serving process and its lanes' (VmRSS); {note}"
        self.every_s, self.peak = every_s, 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> int:
        return int(self.read())

    def __enter__(self) -> MemoryPoll:
        self.peak = self.now()
        self._thread = threading.Thread(target=self._loop, name="optbench-memory", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, self.now())

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, self.now())


def _rss_with_lanes() -> int:
    """Resident memory of this process and of its lane processes (``serving.lane_processes``)."""
    from optbench.measure.memory import current_rss_bytes, proc_kib_field
    from optbench.measure.serving.process_lane import live_pids

    return current_rss_bytes() + sum(proc_kib_field(f"/proc/{pid}/status", "VmRSS") or 0 for pid in live_pids())


def serving_spec(c: Config, base: dict, p99_ms: float) -> Any:
    """The ``serving:`` section that measures candidate ``c``: the peak search alone, on the engine ``c`` describes
    (its lanes, batcher and CUDA graphs), with the LoadGen settings of ``base`` (the spec's serving section and the
    command line's)."""
    from optbench.spec.serving import ServingSpec

    batching = None if c.max_batch == 1 else {"max_batch": c.max_batch, "max_delay_ms": c.max_delay_ms,
                                              "sizes": list(c.batch_sizes())}
    return ServingSpec.model_validate({**base, "scenario": "server", "qps": [], "p99_ms": p99_ms, "peak": True,
                                       "dynamic_batching": batching, "compare_unbatched": False,
                                       "instances": c.instances, "concurrency": [], "cuda_graphs": c.cuda_graphs})


def measure_config(c: Config, session: Any, inputs: tuple, device: str, base: dict, p99_ms: float, log_root: Path,
                   base_memory: int, budget_s: float, lanes_from: Any = None) -> CandidateRow:
    """Candidate ``c`` served and its peak searched; its row (an error is the row's reason, never raised).
    ``lanes_from``: how a lane's process opens the session (``serving.lane_processes``)."""
    from optbench.measure.serving.run import serve_within

    samples, in_axes, out_axes, fixed, rename = inputs
    spec = serving_spec(c, base, p99_ms)
    t0 = clock.monotonic()
    row = CandidateRow.of(c, "measured", device=device, sizes=list(c.batch_sizes()))
    poll = MemoryPoll(device)
    before = poll.now()
    try:
        with poll:
            out = serve_within(budget_s, session, samples, in_axes, out_axes, spec, log_root / c.key.replace("|", "_"),
                               device, fixed, {}, rename, lanes_from=lanes_from)
    except Exception as e:  # an engine that cannot be made (a lane out of memory): a data point, not a crash
        text = f"{type(e).__name__}: {e}".strip()[:600]
        row.status, row.reason = ("oom" if out_of_memory(text) else "failed"), text
        row.memory_source = poll.source
        row.wall_s = round(clock.since(t0), 3)
        return row
    finally:
        _release(device)
    row.memory_bytes, row.memory_source = base_memory + max(0, poll.peak - before), poll.source
    row.wall_s = round(clock.since(t0), 3)
    row.energy_source = (out.get("energy") or {}).get("source") or (out.get("energy") or {}).get("unavailable")
    if out.get("error"):
        row.status, row.reason = ("oom" if out_of_memory(out["error"]) else "failed"), str(out["error"])[:600]
        return row
    peak = (out.get("peak") or [{}])[0]
    row.capacity_items_s = next(iter((out.get("capacity_items_s") or {}).values()), None)
    row.sizes = list((out.get("batching") or {}).get("sizes") or row.sizes)
    row.probes = list(peak.get("probes") or [])
    row.stalls = sorted({s for p in row.probes for s in p.get("stalls") or []})
    row.peak_qps, row.peak_achieved_qps = peak.get("qps") or 0.0, peak.get("achieved_qps")
    row.peak_p99_ms, row.peak_validity, row.peak_note = peak.get("p99_ms"), peak.get("validity"), peak.get("note")
    at_peak = [p for p in row.probes if p["target_qps"] == peak.get("qps") and not p.get("superseded")
               and p.get("role") != "warm-up"]
    row.j_per_item = at_peak[-1].get("j_per_item") if at_peak else None
    failed = sum(int(p.get("errors") or 0) for p in row.probes)
    if failed:
        row.status = "failed"
        row.reason = f"{failed} request(s) failed while it served (their batches raised; a batch may not fit)"
    return row


def _release(device: str) -> None:
    """What a closed engine left cached on the GPU handed back, so the next configuration's reading is its own."""
    torch = sys.modules.get("torch")
    if device.startswith("cuda") and torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def budget_s(base: dict, probes: int) -> float:
    """The longest one candidate may take: every peak-search run at its longest, the burst, the idle draw, the
    lanes' warm-up."""
    per_run = base.get("max_duration_ms", 10_000) / 1000.0 + 2.0
    return probes * per_run + float(base.get("idle_s", 1.0)) + 60.0


def run_deploy_job(job: dict, stage: Any, excl: Any = None) -> dict:
    """The worker's side of a deploy step for one variant (``job``: the run's spec and variant as a run's variant
    job, plus ``configs``, ``known`` outcomes of the variant's earlier candidates, ``serving`` settings, ``p99_ms``,
    ``out_dir``, ``step`` and ``phase``)."""
    from optbench.measure.serving.run import serving_inputs
    from optbench.run.context import Context
    from optbench.run.node_locks import Exclusive
    from optbench.run.variant import lane_source, open_session

    out_dir = Path(job["out_dir"])
    ctx = Context.of_job(job, stage, excl or Exclusive(label=f"optbench deploy {out_dir.name}, "
                                                            f"{job['variant'].get('id')}"))
    ctx.excl.build()
    stage("load")
    session, v, items, _facts = open_session(ctx, job["variant"], job.get("recorded"))
    seen = {Config(**k): Outcome(**o) for k, o in job.get("known") or []}
    base, p99 = dict(job["serving"]), float(job["p99_ms"])
    done = 0
    try:
        inputs = serving_inputs(ctx, session, items, int(base.get("samples", 64)))
        device = v.target.device
        start = MemoryPoll(device).now()
        stage("serving")
        with ctx.excl.timing(device):
            for cd in job["configs"]:
                if job.get("deadline") is not None and clock.wall() >= job["deadline"]:
                    return {"status": "ok", "measured": done, "stopped": "time budget"}
                c = Config(**cd)
                if (d := blocked_by(c, seen)) is not None:
                    row = CandidateRow.of(c, "skipped", device=device, reason=f"not measured: {d.label()} did not "
                                          f"fit ({seen[d].status}), and this one is no smaller")
                else:
                    row = measure_config(c, session, inputs, device, base, p99, out_dir / "serving", start,
                                         budget_s(base, int(base.get("peak_probes", 10))),
                                         lane_source(ctx, v, job.get("recorded")))
                    limit = job.get("memory_limit_bytes")
                    if row.status == "measured" and limit and row.memory_bytes and row.memory_bytes > limit:
                        row.status = "over-memory"
                        row.reason = f"used {row.memory_bytes / 2**30:.3g} GiB, over --memory-gb " \
                                     f"({limit / 2**30:.3g} GiB)"
                row.backend, row.backend_name, row.precision = v.backend, v.backend_name, v.precision
                row.step, row.phase = job.get("step"), job.get("phase")
                append(out_dir / CANDIDATES, row)
                seen[c] = Outcome(row.status, row.peak_qps, row.memory_bytes, row.j_per_item)
                done += 1
                if row.status == "failed" and "did not finish" in (row.reason or ""):
                    break  # a hung run keeps its thread on the session: the next candidates get a fresh process
    finally:
        session.close()
    return {"status": "ok", "measured": done}
