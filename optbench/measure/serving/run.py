"""Serve one built variant through the spec's ``serving:`` scenarios: the row's ``serving`` dict.

The serving samples are staged once as a pool; the session the variant was timed on gives ``serving.instances``
execution lanes (:meth:`optbench.backends.base.Session.lane`), each of which stages the pool where it runs and
warms every batch size it may be asked for, behind one :class:`~.batcher.Batcher` — one request per call
("none"), and, with ``dynamic_batching``, a grouping one ("dynamic"). Each engine goes through LoadGen's
scenarios, the peak search and the concurrency sweep; the soak runs last. Every figure is LoadGen's or this
package's reading; whether it passes is :mod:`optbench.check`'s call.
"""

from __future__ import annotations

import fnmatch
import math
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from optbench.measure.serving.batcher import Batcher, Policy, batching_unavailable, stage, supported_sizes
from optbench.measure.serving.concurrency import burst_throughput, sweep
from optbench.measure.serving.energy import EnergyMeter, open_counter
from optbench.measure.serving.loadgen import LoadSettings, loadgen_unavailable, loadgen_version, run_scenario
from optbench.measure.serving.peak import find_peak
from optbench.measure.serving.soak import nvml_process_bytes, soak


def serve_variant(ctx: Any, v: Any, session: Any, items: Any, row: dict, lanes_from: Any = None) -> dict | None:
    """The serving dict of variant ``v`` (None when the spec's serving.variants do not select it); a failure is
    the dict's ``error``, so the variant's other figures stay. ``lanes_from``: how a lane's process opens the
    session (:class:`~.process_lane.LaneSource`), for ``serving.lane_processes``."""
    spec = ctx.spec.serving
    if spec is None or not any(fnmatch.fnmatch(v.id, p) for p in spec.variants):
        return None
    try:
        samples, in_axes, out_axes, fixed, rename = serving_inputs(ctx, session, items, spec.samples)
        hints = {"latency_ms": row.get("latency_ms_p50"), "items_s": row.get("throughput_items_s")}
        log_root = Path(ctx.run_dir) / "serving" / v.id
        return serve_within(serving_budget_s(ctx), session, samples, in_axes, out_axes, spec, log_root,
                            v.target.device, fixed, hints, rename, lanes_from=lanes_from)
    except Exception as e:  # the row keeps its single-stream figures; check fails the variant on this
        return {"error": f"{type(e).__name__}: {e}"}


def serving_inputs(ctx: Any, session: Any, items: Any, count: int) -> tuple[list[dict], dict, dict, int | None, Any]:
    """What :func:`serve` takes of a run's variant: its first ``count`` eval items as serving samples (one item
    each), the inputs' and outputs' batch axes, the model's fixed batch (None: dynamic) and the renaming of the
    session's outputs to the model's names."""
    from optbench.outputs import as_reference_names

    names = list(ctx.prepared["output_names"])

    def rename(out: dict) -> dict:
        return as_reference_names(out, names, session.names_outputs)

    samples = [items.layout(np.array([i])) for i in range(min(count, len(items)))]
    in_axes = {f.name: (None if f.const is not None else f.batch_axis) for f in items.feed or []} or \
        {k: 0 for k in samples[0]}
    read = str((ctx.prepared.get("interpretation") or {}).get("batch", "dynamic"))
    fixed = int(read.split()[1]) if read.startswith("fixed") else None
    return samples, in_axes, dict(ctx.prepared["output_axes"]), fixed, rename


def serving_budget_s(ctx: Any) -> float:
    """Seconds the serving may take in this worker: what measure.timeout_s leaves (waits on node locks do not count,
    as the supervisor does not count them), less a margin to write the row."""
    import optbench.clock as clock

    timeout = float(ctx.spec.measure.timeout_s)
    age = clock.process_age_s()
    waited = float(getattr(ctx.excl, "waited_s", 0.0) or 0.0)
    left = timeout - age + waited if age is not None else timeout
    return max(0.0, left - max(2.0, 0.05 * timeout))


def serve_within(budget_s: float, *args: Any, out: dict | None = None, **kwargs: Any) -> dict:
    """:func:`serve` with a deadline: past ``budget_s`` the serving dict as far as it got is returned with an error
    (the scenarios that finished are kept, and the variant's single-stream figures with them), where a worker timed
    out whole would lose its row. A run that hangs is left in its thread, which ends with the worker."""
    import json
    import threading

    out = out if out is not None else {}
    failed: list[BaseException] = []

    def work() -> None:
        try:
            serve(*args, out=out, **kwargs)
        except BaseException as e:  # noqa: BLE001  (re-raised in the caller's thread)
            failed.append(e)

    worker = threading.Thread(target=work, name="optbench-serving", daemon=True)
    worker.start()
    worker.join(budget_s)
    if worker.is_alive():
        kept = json.loads(json.dumps(out, default=str))  # a copy: the hung thread may still hold the lists
        return {**kept, "error": f"serving did not finish in the {budget_s:.0f} s that measure.timeout_s left it "
                                 f"(a scenario hung, or the section outlasts the limit); the scenarios that finished "
                                 f"are kept"}
    if failed:
        raise failed[0]
    return out


def engines_for(call: Any, sample: dict, in_axes: dict, out_axes: dict, spec: Any,
                fixed: int | None) -> tuple[list[tuple[str, Policy]], dict]:
    """The engines to serve with (label, policy) and what was found about batching."""
    why = batching_unavailable(in_axes, out_axes)
    plain = (fixed,) if fixed else None
    info: dict[str, Any] = {"in_axes": in_axes, "out_axes": out_axes, "model_batch": f"fixed {fixed}" if fixed else
                            "dynamic", "dynamic": None}
    if fixed and fixed > 1 and why:
        raise ValueError(f"the model's batch is fixed at {fixed} and requests of one item cannot be padded to it: {why}")
    engines = [("none", Policy(1, 0.0, plain))]
    db = spec.dynamic_batching
    if db is None:
        info["judged"] = "none"
        return engines, info
    if why:
        info["unavailable"] = f"dynamic batching unavailable because {why}"
        info["judged"] = "none"
        return engines, info
    if fixed:
        sizes, seen = (fixed,), {fixed: "the model's fixed batch"}
    else:
        wanted = db.sizes or sorted({2 ** k for k in range(int(math.log2(db.max_batch)) + 1)} | {db.max_batch})
        sizes, seen = supported_sizes(call, sample, in_axes, out_axes, wanted)
        if not sizes:
            raise ValueError(f"the session ran none of the batch sizes {wanted}: {seen}")
    info.update(dynamic={"max_batch": db.max_batch, "max_delay_ms": db.max_delay_ms}, sizes=list(sizes),
                sizes_seen={str(k): s for k, s in seen.items()},
                sizes_from="serving.dynamic_batching.sizes, each run once" if db.sizes else
                ("the model's fixed batch" if fixed else "each size run once on the built session"), judged="dynamic")
    dynamic = ("dynamic", Policy(db.max_batch, db.max_delay_ms / 1000.0, tuple(sizes)))
    return (engines + [dynamic]) if spec.compare_unbatched else [dynamic], info


def serve(session: Any, samples: list[dict], in_axes: dict, out_axes: dict, spec: Any, log_root: Path, device: str,
          fixed: int | None = None, hints: dict | None = None, rename: Any = None, out: dict | None = None,
          lanes_from: Any = None) -> dict:
    """Every serving scenario of ``spec`` (a :class:`~optbench.spec.serving.ServingSpec`) on ``session``, whose
    outputs ``rename`` (if given) names as the model does; ``out``: the dict to fill as each part finishes (what
    :func:`serve_within` keeps when its deadline passes); ``lanes_from``: how a lane's process opens the session
    again (:class:`~.process_lane.LaneSource`), which ``serving.lane_processes`` needs."""
    hints = hints or {}
    rename = rename or (lambda outputs: outputs)
    if spec.lane_processes and lanes_from is None:
        raise ValueError("serving.lane_processes: this caller cannot say how another process opens the session")
    loadgen_needed = [s for s in spec.scenarios if s != "soak"] or spec.peak
    if loadgen_needed and (why := loadgen_unavailable()):
        raise RuntimeError(why)

    def call(feeds: dict) -> dict:
        return rename(session.infer(feeds))

    out = out if out is not None else {}
    out.update({"loadgen": loadgen_version(), "p99_bound_ms": spec.p99_ms, "batching": None, "runs": [], "peak": [],
                "concurrency": [], "soak": None, "energy": None, "lanes": {},
                "switch_interval_ms": spec.switch_interval_ms})
    engines, out["batching"] = engines_for(call, samples[0], in_axes, out_axes, spec, fixed)
    pool = stage(samples, in_axes)
    meter, out["energy"] = energy_meter(spec, device)
    before = sys.getswitchinterval()
    sys.setswitchinterval(spec.switch_interval_ms / 1000.0)
    try:
        serve_engines(session, pool, in_axes, out_axes, spec, engines, len(samples), log_root, device, meter, hints,
                      rename, out, lanes_from)
    finally:
        sys.setswitchinterval(before)
    return out


def serve_engines(session: Any, pool: dict, in_axes: dict, out_axes: dict, spec: Any, engines: list, samples: int,
                  log_root: Path, device: str, meter: Any, hints: dict, rename: Any, out: dict,
                  lanes_from: Any = None) -> None:
    """Each engine's scenarios, then the soak, into ``out``."""

    def engine_of(policy: Policy) -> Batcher:
        if spec.lane_processes:
            from optbench.measure.serving.process_lane import ProcessLane

            return Batcher(lambda i: ProcessLane(lanes_from, i, samples, spec.cuda_graphs), out_axes, policy,
                           spec.instances, rename)
        return Batcher(lambda _i: session.lane(pool, in_axes, spec.cuda_graphs), out_axes, policy, spec.instances,
                       rename)

    for label, policy in engines:
        engine = engine_of(policy)
        try:
            out["lanes"][label] = engine.describe()
            serve_engine(engine, label, samples, spec, log_root, meter, hints, out)
        finally:
            engine.close()
    if "soak" in spec.scenarios:
        label, policy = engines[0]
        engine = engine_of(policy)
        try:
            reader, note = nvml_process_bytes(device)
            out["soak"] = asdict(soak(engine, samples, spec.soak_s, spec.soak_window_s, gpu_bytes=reader,
                                      gpu_note=note))
            out["soak"]["batching"] = label
        finally:
            engine.close()


def energy_meter(spec: Any, device: str) -> tuple[EnergyMeter | None, dict]:
    if not spec.energy:
        return None, {"unavailable": "not read: serving.energy is false"}
    counter, source = open_counter(device)
    if counter is None:
        return None, {"unavailable": source}
    meter = EnergyMeter(counter)
    meter.measure_idle(spec.idle_s)
    return meter, meter.describe()


def serve_engine(engine: Batcher, label: str, samples: int, spec: Any, log_root: Path, meter: Any,
                 hints: dict, out: dict) -> None:
    """The LoadGen scenarios, the peak search and the concurrency sweep on one engine, appended to ``out``."""
    latency = float(hints.get("latency_ms") or 1.0)
    base = {"min_duration_ms": spec.min_duration_ms, "max_duration_ms": spec.max_duration_ms,
            "min_query_count": spec.min_query_count}

    probes = [0]

    def server(qps: float, tag: str = "server") -> Any:
        async_cap = max(64, 4 * engine.policy.cap, math.ceil(8 * qps * spec.p99_ms / 1000.0))
        s = LoadSettings("server", target_qps=qps, p99_ms=spec.p99_ms, max_async_queries=async_cap, **base)
        if tag == "peak":  # a QPS may be probed twice: each run its own log
            probes[0] += 1
            tag = f"peak{probes[0]}"
        return run_scenario(engine, samples, s, log_root / f"{label}-{tag}-{qps:g}qps", label, meter)

    capacity = burst_throughput(engine, samples, max(64, 8 * engine.policy.cap))
    capacity = burst_throughput(engine, samples, int(min(50_000, max(64, capacity * 0.3))))  # a ~0.3 s burst
    out.setdefault("capacity_items_s", {})[label] = round(capacity, 3)
    known = []
    for name in spec.scenarios:
        if name == "server":
            known = [server(q) for q in spec.qps]
            out["runs"] += [asdict(r) for r in known]
        elif name != "soak":
            s = LoadSettings(name, expected_latency_ms=latency / 4 * (spec.multi_stream_samples if name ==
                             "multi-stream" else 1), samples_per_query=spec.multi_stream_samples,
                             expected_qps=spec.offline_expected_qps or 2 * capacity, **base)
            out["runs"].append(asdict(run_scenario(engine, samples, s, log_root / f"{label}-{name}", label, meter)))
    if spec.peak:
        start = max(1.0, round(capacity / 2, 1))
        peak = find_peak(lambda q: server(q, "peak"), known, spec.p99_ms, start, label, spec.peak_tolerance,
                         spec.peak_probes)
        peak.instances = engine.instances
        out["peak"].append(asdict(peak))
    if spec.concurrency:
        out["concurrency"] += [asdict(p) for p in sweep(engine, samples, spec.concurrency, spec.concurrency_s, label)]
