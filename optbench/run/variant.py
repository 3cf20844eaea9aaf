"""Build, judge and time one variant (inside its worker process): artifact → backend session → accuracy →
timing window → its row, built from the row's typed parts (:mod:`optbench.row`) as each is measured: a column no
part declares, or a value of the wrong type, fails here rather than becoming a silent extra column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

import optbench.clock as clock
from optbench.backends import Artifact, get_backend
from optbench.measure import measure_rounds, timed
from optbench.measure.gpu import GpuMonitor
from optbench.measure.memory import (
    current_rss_bytes,
    path_bytes,
    peak_rss_bytes,
    peak_rss_since_restart,
    restart_peak_rss,
)
from optbench.plan import Variant, points
from optbench.row import Accuracy, ArtifactFacts, Failure, Identity, Row, Serving, Timing, warning
from optbench.run.artifacts import fp32_onnx, module_bytes, onnx_artifact, transformed_module
from optbench.run.chain import conversion_chain
from optbench.run.context import Context, dims_key
from optbench.run.judge import judge_outputs_of, variant_outputs
from optbench.transforms import count_params


def measure_variant(ctx: Context, vdict: dict, build_only: bool = False, rounds: int | None = None,
                    timing_only: bool = False, recorded: str | None = None, rebuilt: bool = False,
                    turns: Any = None) -> dict:
    """Build, judge and time one variant (its row); with ``build_only`` build its artifacts and stop there (a row
    with status ``built``, build time and bytes). ``recorded``: the ONNX file a row of the run recorded as its
    artifact, timed as it is (re-timing, :mod:`optbench.run.retime`): nothing is exported or converted again.
    ``rebuilt``: the torch module built again from the run's kept entrypoint copy (re-timing a torch row,
    :mod:`optbench.run.kept`). ``turns``: this process's timing rounds alternate with another's
    (:class:`optbench.measure.turns.Turns`, paired re-timing). The row holds the columns measured here, flat
    (:meth:`optbench.row.Row.given`); the sweep adds the rest."""
    v = Variant(**vdict)
    idle_rss = current_rss_bytes()  # the worker before this variant loads anything of its own
    excl = ctx.excl
    if not build_only:  # `optbench build` times nothing, so it takes no timing lock and waits on none
        ctx.stage("waiting for the node")
        excl.build()  # builds share the node; a timing window waits for them and keeps new ones out (held already
        # when the worker process took it at its start)
    ctx.stage("load")
    if failed := (ctx.prepared.get("reference_errors") or {}).get(dims_key(v.dims)):
        raise RuntimeError(failed)
    read = ctx.prepared.get("interpretation") or {}
    if str(read.get("batch", "")).startswith("fixed") and v.batch_size != int(read["batch"].split()[1]):
        # the model showed a fixed batch only when run (a graph that declares a dynamic one, a torch reshape)
        error = f"the model's batch is {read['batch']}, seen when it was read: {read.get('batch_evidence')}"
        return Row(identity=Identity(status="skipped"), artifact=ArtifactFacts(settings=dict(v.settings)),
                   failure=Failure(error=error)).given()
    cls = get_backend(v.backend_name)
    backend = cls(cls.Options.model_validate(v.options))
    target = v.target
    row = Row(artifact=ArtifactFacts(settings=dict(v.settings)))
    facts_of = row.artifact
    if v.transform != "none":
        ctx.stage("transform")
    rebuild = ctx.spec.model.kind.module is not None and recorded is None and not rebuilt
    module, facts = transformed_module(ctx, v) if rebuild else (None, {})
    if rebuilt:
        from optbench.models.reset import with_reset
        from optbench.run.kept import rebuilt_module

        module = with_reset(rebuilt_module(ctx.prepared, ctx.cache), ctx.spec.model, ctx.spec_dir)
    for k in ("params", "sparsity"):
        if k in facts:
            setattr(facts_of, k, facts.pop(k))
    facts_of.settings.update(facts)
    if module is not None and facts_of.params is None:
        facts_of.params = count_params(module)
    artifact, items, built = _artifact(ctx, v, cls, backend, module, row, recorded)
    if build_only:
        ctx.stage("build")
        info, row.timing.build_s = timed(lambda: backend.build_only(artifact, target))
        _record_built(facts_of, cls.consumes, info.get("bytes"), info.get("facts"), info.get("path"))
        row.identity.status = "built"
        return row.given()
    # the artifact is ready: what its export and int8 calibration allocated may stay resident in this process (ONNX
    # Runtime's calibration keeps ~500 MiB for a small CNN), so the variant's delta counts from here
    ready_rss = restart_peak_rss()
    if target.device.startswith("cuda"):
        from optbench.measure.gpu import gpu_index

        row.identity.gpu = gpu_index(target.device)  # physical: CUDA_VISIBLE_DEVICES maps it (an executor's choice)
    monitor = gpu_monitor(target.device)
    try:
        _build_and_measure(ctx, v, backend, artifact, items, row, monitor, excl, rounds, timing_only, built, turns)
    finally:
        if monitor is not None:
            monitor.stop()
    memory = row.memory
    if monitor is not None:
        gpu = monitor.summary()
        facts_of.settings["gpu_state"] = gpu["states"]
        memory.gpu_process_peak_bytes = gpu["process_peak_bytes"]
        if gpu.get("note"):
            facts_of.settings["gpu_memory_note"] = gpu["note"]
        if memory.gpu_peak_bytes is None and gpu["process_peak_bytes"] is not None:
            memory.gpu_peak_bytes = gpu["process_peak_bytes"]
            facts_of.settings["gpu_memory"] = "NVML per-process peak (polled every 10 ms; includes the CUDA context)"
        row.warnings += monitor.warnings()
    elif target.device == "cuda":
        facts_of.settings["gpu_memory_note"] = f"no NVML readings: {GpuMonitor.why}"
    memory.peak_rss_bytes = peak_rss_bytes()
    memory.idle_rss_bytes = idle_rss
    since = peak_rss_since_restart() if ready_rss else None
    if since is not None:
        memory.rss_delta_bytes = max(0, since - ready_rss)
        facts_of.settings["host_memory"] = (f"host RSS delta: the peak above the {ready_rss / 2**20:.0f} MiB resident "
                                            "once the artifact was ready (session, accuracy, timing, serving; not "
                                            "the export or int8 calibration)")
    else:
        memory.rss_delta_bytes = max(0, memory.peak_rss_bytes - idle_rss) if idle_rss else None
        facts_of.settings["host_memory"] = ("host RSS delta: the process's peak above its idle size (the export and "
                                            "int8 calibration included: this system cannot restart the peak)")
    row.identity.status = "ok"
    return row.given()


def open_session(ctx: Context, vdict: dict, recorded: str | None = None) -> tuple[Any, Variant, Any, dict]:
    """The variant's backend session, built as its run built it (from the ``recorded`` ONNX file where the row
    recorded one; else exported or loaded again, from the cache): (session, variant, eval items, the row's facts of
    the artifact). The caller closes the session. Used where a variant's session is wanted without judging or
    timing it again (``optbench deploy``'s serving candidates)."""
    v = Variant(**vdict)
    cls = get_backend(v.backend_name)
    backend = cls(cls.Options.model_validate(v.options))
    row = Row(artifact=ArtifactFacts(settings=dict(v.settings)))
    rebuild = ctx.spec.model.kind.module is not None and (recorded is None or cls.consumes == "torch")
    module, _ = transformed_module(ctx, v) if rebuild else (None, {})
    if cls.consumes == "torch" or ctx.prepared.get("native") is not None:
        recorded = None
    artifact, items, _ = _artifact(ctx, v, cls, backend, module, row, recorded)
    ctx.stage("build")
    session, row.timing.build_s = timed(lambda: backend.build(artifact, v.target))
    _record_built(row.artifact, cls.consumes, getattr(session, "artifact_bytes", None), getattr(session, "facts", None),
                  session.built_path)
    return session, v, items, row.given()


def lane_source(ctx: Any, v: Any, recorded: str | None = None) -> Any:
    """What a lane's process (:mod:`optbench.run.lane_process`) needs to open variant ``v`` of the run of ``ctx``
    again, as :func:`open_session` opens it (it takes no node locks: the serving process holds the timing window
    while its lanes start)."""
    from optbench.measure.serving.process_lane import LaneSource

    job = {"spec": ctx.spec.model_dump(mode="json"), "spec_dir": str(ctx.spec_dir), "run_dir": str(ctx.run_dir),
           "cache_dir": str(ctx.cache.root), "variant": v.to_dict(), "recorded": recorded}
    return LaneSource("optbench.run.lane_process", job)


def _artifact(ctx: Context, v: Variant, cls: Any, backend: Any, module: Any, row: Row,
              recorded: str | None) -> tuple[Artifact, Any, dict]:
    """What the backend builds the variant from (the model file as given, the torch module, or its ONNX file:
    exported, or the ``recorded`` one as it is), its eval items at the variant's point and what was built on the
    way; the artifact's facts go into ``row``."""
    target = v.target
    facts_of = row.artifact
    native = ctx.prepared.get("native")
    built: dict[str, Any] = {"onnx_fp32": None, "export": None, "module": module}
    if native is not None and native["framework"] in cls.runs:  # the model file as given, by its own framework
        from optbench.models.base import NativeModel

        artifact = Artifact(native=NativeModel.from_dict(native), inputs=ctx.spec.inputs)
        facts_of.model_bytes = path_bytes(Path(native["path"]))
        facts_of.artifact = native["path"]
    elif cls.consumes == "torch":
        artifact = Artifact(module=module, inputs=ctx.spec.inputs)
        facts_of.model_bytes = module_bytes(module)
    else:
        precision = cls.onnx_precision(target, backend.options)
        ctx.stage("export" if precision == "fp32" else f"export ({precision})")
        (path, info), export_s = timed(lambda: onnx_artifact(ctx, v, module, precision) if recorded is None
                                       else (ctx.cache.verify(Path(recorded)), {}))
        row.warnings = list((info.get("int8_graph") or {}).pop("warnings", []))
        facts_of.settings.update(info)
        row.timing.export_s = export_s
        facts_of.model_bytes = path_bytes(path)
        facts_of.artifact = str(path)  # the ONNX file this variant's backend consumed (in the artifact cache)
        artifact = Artifact(onnx_path=path, inputs=ctx.spec.inputs)
        if recorded is None:
            built.update(onnx_fp32=fp32_onnx(ctx, v, module)[0], export=info if module is not None else None)
    items = ctx.splits.eval.at_shape(ctx.spec.inputs, v.dims)
    artifact.sample = next(items.batches(v.batch_size))[0]
    row.identity.fed_shapes = {k: list(np.shape(x)) for k, x in artifact.sample.items()}  # what this variant is fed
    if items.fitted:
        facts_of.settings["data_fit"] = items.fitted
    artifact.cache_dir = ctx.cache.root
    artifact.cache = ctx.cache
    artifact.points = points(ctx.spec)
    if v.precision == "int8":
        from optbench.transforms.quantize import calibration_batches

        q = v.int8 or {}
        cal = ctx.splits.calibration.at_shape(ctx.spec.inputs, v.dims)
        artifact.calibration = calibration_batches(cal, q.get("samples", 256), batch=v.batch_size)
    return artifact, items, built


def _record_built(facts_of: ArtifactFacts, consumes: str, nbytes: int | None, facts: dict | None,
                  path: str | None = None) -> None:
    """What the backend built: its bytes replace the ONNX file's where it runs something else (an engine, an IR;
    the ONNX bytes are kept in the settings), and what it can say about it (layers, precisions). A model file it
    made of its own (OpenVINO's int8 IR) becomes the row's artifact, the file it was made from kept as built_from."""
    if nbytes:
        if consumes != "torch":
            facts_of.settings["onnx_bytes"] = facts_of.model_bytes
        facts_of.model_bytes = nbytes
    facts_of.settings.update(facts or {})
    if path:
        facts_of.settings["built_from"] = facts_of.artifact
        facts_of.artifact = path


def gpu_monitor(device: str) -> GpuMonitor | None:
    """An NVML monitor of the GPU this process uses, started; None on the CPU or without NVML."""
    from optbench.measure.gpu import gpu_index

    if not device.startswith("cuda"):
        return None
    monitor = GpuMonitor.open(gpu_index(device))
    return monitor.start() if monitor is not None else None


def _build_and_measure(ctx: Context, v: Variant, backend: Any, artifact: Artifact, items: Any, row: Row,
                       monitor: GpuMonitor | None, excl: Any, rounds: int | None = None,
                       timing_only: bool = False, built: dict | None = None, turns: Any = None) -> None:
    ctx.stage("build")
    session, row.timing.build_s = timed(lambda: backend.build(artifact, v.target))
    settings = row.artifact.settings
    _record_built(row.artifact, type(backend).consumes, getattr(session, "artifact_bytes", None),
                  getattr(session, "facts", None), session.built_path)
    try:
        if not timing_only:  # a variant's further timing processes leave accuracy to its first
            ctx.stage("accuracy")
            outputs = variant_outputs(ctx, v, session, items)
            judged = judge_outputs_of(ctx, v, outputs)
            built = built or {}
            conversion = conversion_chain(ctx, v, type(backend), outputs, built.get("onnx_fp32"), built.get("export"),
                                          built.get("module"))
            row.accuracy = Accuracy(**{k: x for k, x in judged.items() if k in Accuracy.model_fields},
                                    conversion=conversion)
            # what no part declares: a custom task hook's own metrics, the raw outputs' drift under a postprocess
            # hook (raw_drift_*), kept as their own columns
            row.extra.update({k: x for k, x in judged.items() if k not in Accuracy.model_fields})
        if ctx.spec.measure.mode == "judge":
            settings["timing"] = "not timed (measure.mode: judge): accuracy only"
            return
        if monitor is not None:
            monitor.pause()  # no polling thread while latency is sampled
        ctx.stage("waiting for the timing window")
        with excl.timing(v.target.device):
            ctx.stage("timing")
            opened = clock.wall()  # wall clock: windows of processes on one node compare
            m, dev, timing = measure_rounds(session, artifact.sample, v.batch_size, ctx.spec.measure, count=rounds,
                                            turns=turns)
            window = [opened, clock.wall()]
        if timing["busy"]:
            row.warnings.append(warning("busy", "machine busy during timing: " + timing["busy"]))
        if monitor is not None:
            monitor.state("after_timing")
            monitor.resume()
        gpu_times: dict[str, Any] = {}
        if dev is not None:
            gpu_times = {**dev.summary("gpu_ms"), "gpu_samples_ms": list(dev.samples_ms)}
            settings["timing"] = "latency_ms_*: host clock around call + synchronize; gpu_ms_*: CUDA events"
        # the timing part, whole: what the window measured and how it was taken (overlapped_windows: other GPUs'
        # windows beside this one, their rounds judged); build and export times were set before
        row.timing = Timing(**row.timing.columns(), **m.summary(), **gpu_times, throughput_items_s=m.throughput,
                            iterations=len(m.samples_ms), samples_ms=list(m.samples_ms), rounds=timing["rounds"],
                            contention=timing["contention"], busy=timing["busy"],
                            probe_us_rounds=[r["probe_us"] for r in timing["rounds"]], timing_window=window,
                            lock_wait_s=round(excl.waited_s, 3), overlapped_windows=list(excl.overlaps),
                            **({"timing_core": excl.timing_core} if excl.timing_core is not None else {}))
        row.warnings += list(m.warnings)
        if ctx.spec.serving is not None and not timing_only:  # latency under load, on the same session
            from optbench.measure.serving import serve_variant

            ctx.stage("serving")
            with excl.timing(v.target.device):
                lanes_from = None
                if ctx.spec.serving.lane_processes:
                    lanes_from = lane_source(ctx, v)
                if (served := serve_variant(ctx, v, session, items, row.given(), lanes_from)) is not None:
                    from optbench.measure.serving.figures import headline

                    # with the figures budgets and constraints read
                    row.serving = Serving(serving=served, **headline(served))
        peak = session_peak(session)
        if peak is not None:
            row.memory.gpu_peak_bytes = peak
            settings["gpu_memory"] = "torch allocator peak (torch.cuda.max_memory_allocated)"
        else:
            row.memory.gpu_peak_bytes = None
    finally:
        session.close()


def session_peak(session: Any) -> int | None:
    peak = getattr(session, "device_peak_bytes", None)
    return peak() if callable(peak) else None
