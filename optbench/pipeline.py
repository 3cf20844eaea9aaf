"""Build and measure one variant: model → transform → artifact → backend session → measurement + drift.

Runs inside a worker process. Every artifact goes through the content-addressed cache,
so variants that share a build (the same ONNX file at another batch size) build it once.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from optbench.backends import Artifact, get_backend
from optbench.measure import measure_rounds, timed
from optbench.measure.gpu import GpuMonitor
from optbench.measure.memory import current_rss_bytes, path_bytes, peak_rss_bytes
from optbench.plan import Variant, points
from optbench.transforms import apply_transform, count_params
from optbench.worker import Context, dims_key, load_reference


def load_base_module(ctx: Context) -> Any:
    import torch

    if ctx.spec.model.source == "python":
        from optbench.models import import_entrypoint

        import_entrypoint(ctx.spec.model.entrypoint, ctx.spec_dir)  # classes the pickle refers to
    path = ctx.cache.verify(Path(ctx.prepared["model_path"]))
    if ctx.prepared.get("model_format") == "state_dict":  # the architecture rebuilt, the weights as plain tensors
        from optbench.models import load_model

        module = load_model(ctx.spec.model, ctx.spec_dir, seed=ctx.spec.seed).module
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return module.eval()
    # a full pickle (the model's own classes), read only after its digests matched this user's ledger
    return torch.load(path, map_location="cpu", weights_only=False).eval()


def transformed_module(ctx: Context, v: Variant) -> tuple[Any, dict]:
    import json

    import torch

    base = load_base_module(ctx)
    if v.transform == "none":
        return base, {}
    tspec = next(t for t in ctx.spec.variants.transforms if t != "none" and t.name == v.transform)
    key = ctx.cache.key("transform", [ctx.prepared["identity"], tspec.model_dump(mode="json"), ctx.spec.seed])

    def build(folder: Path) -> None:
        module, facts = apply_transform(base, tspec, ctx)
        torch.save(module, folder / "model.pt")
        (folder / "facts.json").write_text(json.dumps(facts))

    path, _ = ctx.cache.get_or_build(key, "model.pt", build)
    facts = json.loads((path.parent / "facts.json").read_text())
    return torch.load(ctx.cache.verify(path), map_location="cpu", weights_only=False).eval(), facts


def onnx_artifact(ctx: Context, v: Variant, module: Any, precision: str) -> tuple[Path, dict]:
    """The fp32 ONNX export, then the conversion to ``precision`` (fp16 graph, int8 Q/DQ) the backend asks for."""
    from optbench.export.onnx import export_onnx

    spec, info = ctx.spec, {}
    if module is None:
        fp32 = Path(ctx.prepared["model_path"])
    else:
        sample = next(ctx.splits.eval.at_shape(spec.inputs, v.dims).batches(sample_batch(ctx, max(2, v.batch_size))))[0]
        key = ctx.cache.key("onnx", [ctx.prepared["identity"], v.transform, spec.export.model_dump(mode="json"),
                                     [i.model_dump(mode="json") for i in spec.inputs], _tspec(ctx, v),
                                     ctx.prepared["output_axes"]])
        fp32, facts, cached = _cached(ctx, key, lambda out: export_onnx(
            module, spec.inputs, sample, out, spec.export, ctx.prepared["output_names"], ctx.prepared["output_axes"]))
        info.update(facts, export_cached=cached)
    if precision not in ("fp16", "int8"):
        return fp32, info
    q = v.int8 or {}
    static_pc = precision == "int8" and q.get("mode", "static") == "static" and q.get("per_channel", True)
    norm, facts = normalized_copy(ctx, v, fp32, min_opset=13 if static_pc else 0)
    info.update(facts)
    if precision == "fp16":
        from optbench.export.precision import RECIPE, convert_fp16

        path, facts, _ = _cached(ctx, ctx.cache.key("fp16", [_file_key(norm), RECIPE]),
                                 lambda out: convert_fp16(norm, out))
        return path, {**info, **facts}
    from optbench.transforms.quantize import RECIPE as QRECIPE
    from optbench.transforms.quantize import calibration_digest, quantize_onnx

    cal = calibration_digest(ctx.splits.calibration.at_shape(spec.inputs, v.dims), q.get("samples", 256))
    key = ctx.cache.key("int8", [_file_key(norm), v.int8, v.dims, cal, QRECIPE])
    path, facts, _ = _cached(ctx, key, lambda out: quantize_onnx(ctx, norm, out, v, module))
    graph = dict(facts.get("int8_graph") or {})  # a copy: the cached facts stay as built
    warnings = list(graph.get("warnings", []))
    if spec.data.source == "synthetic":  # said in every int8 row, never silently
        cal = {**cal, "data": "random"}
        warnings.append("calibrated on random inputs (data: synthetic): the int8 scales fit noise, not the model's "
                        "real inputs")
    if path_bytes(path) >= path_bytes(fp32):
        warnings.append(f"the int8 file is not smaller than fp32 ({path_bytes(path) / 1e6:.2f} vs "
                        f"{path_bytes(fp32) / 1e6:.2f} MB)")
    if warnings:
        graph["warnings"] = warnings
    return path, {**info, **facts, "calibration": cal, **({"int8_graph": graph} if graph else {})}


def sample_batch(ctx: Context, wanted: int) -> int:
    """The batch of a check or export sample: ``wanted``, or the batch the model fixes (1 without a batch axis)."""
    read = str((ctx.prepared.get("interpretation") or {}).get("batch", "dynamic"))
    if read.startswith("fixed"):
        return int(read.split()[1])
    return wanted if any(i.batch_axis is not None for i in ctx.spec.inputs) else 1


def normalized_copy(ctx: Context, v: Variant, fp32: Path, min_opset: int) -> tuple[Path, dict]:
    """The fp32 graph normalised for conversion (see :mod:`optbench.export.normalize`), cached."""
    from optbench.export.normalize import RECIPE, normalize

    sample = next(ctx.splits.calibration.at_shape(ctx.spec.inputs, v.dims).batches(sample_batch(ctx, 2)))[0]
    key = ctx.cache.key("normalized", [_file_key(fp32), RECIPE, min_opset])
    path, facts, _ = _cached(ctx, key, lambda out: normalize(fp32, out, min_opset, sample))
    return path, facts


def _cached(ctx: Context, key: str, make) -> tuple[Path, dict, bool]:
    """An ONNX artifact from the cache (or built by ``make(path) -> facts``), with the facts of its build."""
    import json

    def build(folder: Path) -> None:
        facts = make(folder / "model.onnx") or {}
        (folder / "facts.json").write_text(json.dumps(facts, default=str))

    path, cached = ctx.cache.get_or_build(key, "model.onnx", build)
    facts_file = path.parent / "facts.json"
    return path, (json.loads(facts_file.read_text()) if facts_file.exists() else {}), cached


def _tspec(ctx: Context, v: Variant) -> Any:
    return next((t.model_dump(mode="json") for t in ctx.spec.variants.transforms if t != "none" and t.name == v.transform), None)


def _file_key(path: Path) -> str:
    from optbench.models import file_digest

    return file_digest(path)


def module_bytes(module: Any) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return int(sum(t.numel() * t.element_size() for t in tensors))


# the step a variant is in, for the row of a variant that fails ("failed at export: ...")
STAGE = {"now": "prepare"}


def stage(name: str) -> None:
    STAGE["now"] = name


def measure_variant(ctx: Context, vdict: dict, build_only: bool = False, rounds: int | None = None,
                    timing_only: bool = False) -> dict:
    """Build, judge and time one variant (its row); with ``build_only`` build its artifacts and stop there (a row
    with status ``built``, build time and bytes)."""
    from optbench.exclusive import current

    v = Variant(**vdict)
    idle_rss = current_rss_bytes()  # the worker before this variant loads anything of its own
    stage("waiting for the node")
    excl = current()
    excl.build()  # builds share the node; a timing window waits for them and keeps new ones out (held already
    # when the worker process took it at its start)
    stage("load")
    if failed := (ctx.prepared.get("reference_errors") or {}).get(dims_key(v.dims)):
        raise RuntimeError(failed)
    read = ctx.prepared.get("interpretation") or {}
    if str(read.get("batch", "")).startswith("fixed") and v.batch_size != int(read["batch"].split()[1]):
        # the model showed a fixed batch only when run (a graph that declares a dynamic one, a torch reshape)
        return {"status": "skipped", "settings": dict(v.settings),
                "error": f"the model's batch is {read['batch']}, seen when it was read: {read.get('batch_evidence')}"}
    cls = get_backend(v.backend_name)
    backend = cls(cls.Options.model_validate(v.options))
    target = v.target
    row: dict[str, Any] = {"settings": dict(v.settings)}
    if v.transform != "none":
        stage("transform")
    module, facts = (None, {}) if ctx.spec.model.source == "onnx" else transformed_module(ctx, v)
    row.update({k: facts.pop(k) for k in ("params", "sparsity") if k in facts})
    row["settings"].update(facts)
    if module is not None and "params" not in row:
        row["params"] = count_params(module)
    if cls.consumes == "torch":
        artifact = Artifact(module=module, inputs=ctx.spec.inputs)
        row["model_bytes"] = module_bytes(module)
    else:
        precision = cls.onnx_precision(target, backend.options)
        stage("export" if precision == "fp32" else f"export ({precision})")
        (path, info), export_s = timed(lambda: onnx_artifact(ctx, v, module, precision))
        row["warnings"] = list((info.get("int8_graph") or {}).pop("warnings", []))
        row["settings"].update(info)
        row["export_s"] = export_s
        row["model_bytes"] = path_bytes(path)
        row["artifact"] = str(path)  # the ONNX file this variant's backend consumed (in the artifact cache)
        artifact = Artifact(onnx_path=path, inputs=ctx.spec.inputs)
    items = ctx.splits.eval.at_shape(ctx.spec.inputs, v.dims)
    artifact.sample = next(items.batches(v.batch_size))[0]
    row["fed_shapes"] = {k: list(np.shape(x)) for k, x in artifact.sample.items()}  # what this variant is fed
    if items.fitted:
        row["settings"]["data_fit"] = items.fitted
    artifact.cache_dir = ctx.cache.root
    artifact.cache = ctx.cache
    artifact.points = points(ctx.spec)
    if v.precision == "int8":
        from optbench.transforms.quantize import calibration_batches

        q = v.int8 or {}
        cal = ctx.splits.calibration.at_shape(ctx.spec.inputs, v.dims)
        artifact.calibration = calibration_batches(cal, q.get("samples", 256), batch=v.batch_size)
    if build_only:
        stage("build")
        info, row["build_s"] = timed(lambda: backend.build_only(artifact, target))
        _record_built(row, cls.consumes, info.get("bytes"), info.get("facts"))
        row["status"] = "built"
        return row
    monitor = gpu_monitor(target.device)
    try:
        _build_and_measure(ctx, v, backend, artifact, items, row, monitor, excl, rounds, timing_only)
    finally:
        if monitor is not None:
            monitor.stop()
    if monitor is not None:
        gpu = monitor.summary()
        row["settings"]["gpu_state"] = gpu["states"]
        row["gpu_process_peak_bytes"] = gpu["process_peak_bytes"]
        if gpu.get("note"):
            row["settings"]["gpu_memory_note"] = gpu["note"]
        if row.get("gpu_peak_bytes") is None and gpu["process_peak_bytes"] is not None:
            row["gpu_peak_bytes"] = gpu["process_peak_bytes"]
            row["settings"]["gpu_memory"] = "NVML per-process peak (polled every 10 ms; includes the CUDA context)"
        row["warnings"] = list(row.get("warnings") or []) + monitor.warnings()
    elif target.device == "cuda":
        row["settings"]["gpu_memory_note"] = f"no NVML readings: {GpuMonitor.why}"
    row["peak_rss_bytes"] = peak_rss_bytes()
    row["idle_rss_bytes"] = idle_rss
    row["rss_delta_bytes"] = max(0, row["peak_rss_bytes"] - idle_rss) if idle_rss else None
    row["status"] = "ok"
    return row


def _record_built(row: dict, consumes: str, nbytes: int | None, facts: dict | None) -> None:
    """What the backend built: its bytes replace the ONNX file's where it runs something else (an engine, an IR;
    the ONNX bytes are kept in the settings), and what it can say about it (layers, precisions)."""
    if nbytes:
        if consumes != "torch":
            row["settings"]["onnx_bytes"] = row.get("model_bytes")
        row["model_bytes"] = nbytes
    row["settings"].update(facts or {})


def gpu_monitor(device: str) -> GpuMonitor | None:
    """An NVML monitor of the GPU this process uses, started; None on the CPU or without NVML."""
    from optbench.measure.gpu import gpu_index

    if not device.startswith("cuda"):
        return None
    monitor = GpuMonitor.open(gpu_index(device))
    return monitor.start() if monitor is not None else None


def _build_and_measure(ctx: Context, v: Variant, backend: Any, artifact: Artifact, items: Any, row: dict,
                       monitor: GpuMonitor | None, excl: Any, rounds: int | None = None,
                       timing_only: bool = False) -> None:
    stage("build")
    session, row["build_s"] = timed(lambda: backend.build(artifact, v.target))
    _record_built(row, type(backend).consumes, getattr(session, "artifact_bytes", None), getattr(session, "facts", None))
    try:
        if not timing_only:  # a variant's further timing processes leave accuracy to its first
            stage("accuracy")
            row.update(judge_variant(ctx, v, session, items))
        if monitor is not None:
            monitor.pause()  # no polling thread while latency is sampled
        stage("waiting for the timing window")
        with excl.timing(v.target.device):
            stage("timing")
            opened = time.time()  # wall clock: windows of processes on one node compare
            m, dev, timing = measure_rounds(session, artifact.sample, v.batch_size, ctx.spec.measure, count=rounds)
            row["timing_window"] = [opened, time.time()]
        row["lock_wait_s"] = round(excl.waited_s, 3)
        if excl.timing_core is not None:
            row["timing_core"] = excl.timing_core
        row.update(rounds=timing["rounds"], contention=timing["contention"], busy=timing["busy"],
                   probe_us_rounds=[r["probe_us"] for r in timing["rounds"]])
        if timing["busy"]:
            row["warnings"] = list(row.get("warnings") or []) + ["machine busy during timing: " + timing["busy"]]
        if monitor is not None:
            monitor.state("after_timing")
            monitor.resume()
        row.update(m.summary())
        if dev is not None:
            row.update({k: val for k, val in dev.summary("gpu_ms").items()}, gpu_samples_ms=list(dev.samples_ms))
            row["settings"]["timing"] = "latency_ms_*: host clock around call + synchronize; gpu_ms_*: CUDA events"
        row.update(throughput_items_s=m.throughput, iterations=len(m.samples_ms), samples_ms=list(m.samples_ms),
                   warnings=list(row.get("warnings") or []) + list(m.warnings))
        if ctx.spec.serving is not None and not timing_only:  # latency under load, on the same session
            from optbench.measure.serving import serve_variant

            stage("serving")
            with excl.timing(v.target.device):
                if (served := serve_variant(ctx, v, session, items, row)) is not None:
                    row["serving"] = served
        peak = session_peak(session)
        if peak is not None:
            row["gpu_peak_bytes"] = peak
            row["settings"]["gpu_memory"] = "torch allocator peak (torch.cuda.max_memory_allocated)"
        else:
            row["gpu_peak_bytes"] = None
    finally:
        session.close()


def judge_variant(ctx: Context, v: Variant, session: Any, items: Any) -> dict:
    """Every output of the variant on the eval items against the reference's: per output and part, the worst
    of them in the flat columns (see :func:`optbench.measure.drift.judge_outputs`)."""
    from optbench.outputs import concat_items, item_major

    names, axes = ctx.prepared["output_names"], ctx.prepared.get("output_axes")
    refs = load_reference(ctx.run_dir, v.dims)
    ref_kinds = {k: r.dtype for k, r in refs.items()}
    chunks = []
    for feeds, real in items.batches(v.batch_size):
        out = session.infer(feeds)
        if list(out) != names and len(out) == len(names):  # torch sessions name outputs by position
            out = dict(zip(names, out.values()))
        out = {k: _as_reference_kind(x, ref_kinds.get(k)) for k, x in out.items()}
        chunks.append((item_major(out, axes), real))
    outputs = concat_items(chunks)
    for name, ref in refs.items():
        if name not in outputs:
            raise RuntimeError(f"the variant returns no output '{name}' (it returns {list(outputs)})")
        if outputs[name].shape != ref.shape:
            raise RuntimeError(f"output '{name}' has shape {outputs[name].shape[1:]} per item where the reference's "
                               f"is {ref.shape[1:]}")
    labels = ctx.splits.eval.labels
    return judge_all(ctx.spec, ctx.spec_dir, outputs, refs, labels, Path(ctx.prepared["model_path"]))


def judge_all(spec: Any, spec_dir: Path, outputs: dict, refs: dict, labels: Any, model_path: Path) -> dict:
    """Every view judged (after the spec's model-level hook, applied to both sides alike); with a hook, the raw
    outputs' drift is kept beside (``raw_outputs``)."""
    from optbench.measure.drift import _drift, judge_outputs, postprocess_outputs
    from optbench.measure.tasks import TaskContext
    from optbench.outputs import build_views

    if missing := sorted(set(refs) - set(outputs)):
        raise ValueError(f"the variant does not return output(s) {missing}, which the reference returns: an "
                         f"output that exists at some batch sizes or precisions only cannot be judged")
    if extra := sorted(set(outputs) - set(refs)):
        raise ValueError(f"the variant returns output(s) {extra}, which the reference does not: an output that "
                         f"exists at some batch sizes or precisions only cannot be judged")
    raw = {}
    if spec.postprocess_outputs:
        raw = {k: _drift(outputs[k], r) for k, r in refs.items() if r.dtype.kind not in "iub"}
        outputs = postprocess_outputs(spec.postprocess_outputs, outputs, spec_dir)
        refs = postprocess_outputs(spec.postprocess_outputs, refs, spec_dir)
    views = build_views(spec, refs, labels)
    judged = judge_outputs(outputs, refs, views, labels, TaskContext(model_path, spec_dir))
    if spec.postprocess_outputs:
        judged["raw_outputs"] = raw
        judged["drift_after_postprocess"] = ["postprocess_outputs"] + judged["drift_after_postprocess"]
    return judged


def _as_reference_kind(x: Any, ref_dtype: Any) -> Any:
    """Integer and boolean reference outputs are compared exactly: a backend that returned them as floats
    (an engine's int32 ids cast to float) is read back in the reference's type."""
    import numpy as np

    if ref_dtype is None or np.dtype(ref_dtype).kind not in "iub" or np.asarray(x).dtype.kind not in "fc":
        return x
    return np.rint(np.asarray(x)).astype(ref_dtype)


def session_peak(session: Any) -> int | None:
    peak = getattr(session, "device_peak_bytes", None)
    return peak() if callable(peak) else None
