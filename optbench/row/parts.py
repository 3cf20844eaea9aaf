"""The row's typed parts (identity, timing, memory, accuracy, serving, artifact, failure, search), with the unit
and meaning of every column on its field. The code that measures a part builds it.

Adding a column: a field in the part it belongs to, with ``col(doc, unit=..., since=SCHEMA_VERSION)``.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# 1: first rows; 2: every output judged, rounds, robust statistics, busy; 3: typed row (backend_name,
# reference_backend, typed warnings, topk_k; ratios and counts no longer named *_ms_*); 4: model files of other
# frameworks (model_format), the conversion chain with each step's drift; 5: fp16 settings, search part (tune);
# 6: start_s (a variant's wait between its dispatch and its process's start)
SCHEMA_VERSION = 6


def col(doc: str, unit: str | None = None, old: tuple[str, ...] = (), since: int = 1) -> Any:
    """A column: its meaning, its unit (None for names, flags and ratios without one), the names it had in older
    schema versions, and the schema version that introduced it."""
    return Field(None, description=doc, json_schema_extra={"unit": unit, "old": list(old), "since": since})


class Part(BaseModel):
    """A typed part of the row. The code that measures a part builds it: a column no part declares (a mistyped
    name) is refused, and so is a value of the wrong type, whether passed to the constructor or assigned later.
    Rows read back from disk are not validated again (:meth:`Row.from_dict` reads every schema version)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())

    def columns(self) -> dict[str, Any]:
        """The columns this part was given (a None given on purpose included), flat."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class Identity(Part):
    """Which variant this is, of which run, on which machine."""

    schema_version: int | None = col("The row's schema version (see optbench/row/parts.py).")
    variant_id: str | None = col("Stable id: the axes' values and a hash of the settings that differ from their "
                                 "defaults.")
    model: str | None = col("The model as the spec names it (torchvision name, entrypoint, file name, folder).")
    model_format: str | None = col("The model's source: torchvision, python, transformers, onnx, torchscript, "
                                   "exported, tensorflow, tflite or openvino.", since=4)
    backend: str | None = col("The spec's label of the backend entry (a backend may appear with several options).")
    backend_name: str | None = col("The registered backend that ran the variant (optbench env lists them).", since=3)
    device: str | None = col("Where the variant ran: cpu, cuda, cuda:N.")
    precision: str | None = col("fp32, fp16, bf16 or int8.")
    int8: dict | None = col("The int8 settings (mode, calibration method, per-channel, ...); null for other "
                            "precisions.")
    fp16: dict | None = col("The fp16 graph's settings (nodes kept in fp32); null for the plain graph.", since=5)
    transform: str | None = col("The torch-side transform: none, or the spec's prune/distill entry name.")
    batch_size: int | None = col("Items per call.", unit="items")
    shape: dict | None = col("The dynamic dimensions of this point ({name: size}); {} for static models.")
    status: str | None = col("ok, failed, timeout, skipped, or built (optbench build).")
    reference: str | None = col("What the variant was judged against (e.g. 'torch fp32 cpu').")
    reference_backend: str | None = col("The registered backend that computed the reference.", since=3)
    interpretation: dict | None = col("How optbench read the model: batch, each output's batch axis and its "
                                      "evidence, warnings (see interpretation.json).", since=2)
    fed_shapes: dict | None = col("The shape fed to each input at this variant's point ({input: [dims]}).", since=2)
    node: str | None = col("The machine (host name) the variant ran on.", since=2)
    gpu: int | None = col("The physical GPU (its index on the node) a CUDA variant ran on; null on the CPU.", since=3)
    host: str | None = col("CPU and GPU of the machine, in words.")
    commit: str | None = col("optbench's git commit (-dirty with local changes).")
    retried: bool | None = col("Whether the variant ran again after its Ray runner was lost (Ray executor).", since=2)


class Timing(Part):
    """Latency of one call at a time (the single-stream measurement), its statistics and how it was taken."""

    latency_ms_p50: float | None = col("Median latency of a call (host clock around call + synchronize).", "ms")
    latency_ms_p90: float | None = col("90th percentile latency.", "ms")
    latency_ms_p95: float | None = col("95th percentile latency.", "ms")
    latency_ms_p99: float | None = col("99th percentile latency.", "ms")
    latency_ms_mean: float | None = col("Mean latency.", "ms")
    latency_ms_std: float | None = col("Standard deviation of the latency.", "ms")
    latency_ms_min: float | None = col("Fastest call.", "ms")
    latency_ms_max: float | None = col("Slowest call.", "ms")
    latency_ms_iqr: float | None = col("Interquartile range of the latency.", "ms", since=2)
    latency_ms_mad: float | None = col("Median absolute deviation of the latency.", "ms", since=2)
    latency_ms_rounds: list | None = col("Median latency of each timing round.", "ms", since=2)
    latency_cv: float | None = col("Coefficient of variation of all samples (std / mean).", "ratio",
                                   old=("latency_ms_cv",), since=3)
    latency_cv_trimmed: float | None = col("Coefficient of variation inside the Tukey fences.", "ratio",
                                           old=("latency_ms_cv_trimmed",), since=3)
    latency_outliers: int | None = col("Samples outside the Tukey fences.", "count", old=("latency_ms_outliers",),
                                       since=3)
    latency_round_spread: float | None = col("(max - min) / median of the round medians.", "ratio",
                                             old=("latency_ms_round_spread",), since=3)
    gpu_ms_p50: float | None = col("Median GPU time of a call (CUDA events).", "ms")
    gpu_ms_p90: float | None = col("90th percentile GPU time.", "ms")
    gpu_ms_p95: float | None = col("95th percentile GPU time.", "ms")
    gpu_ms_p99: float | None = col("99th percentile GPU time.", "ms")
    gpu_ms_mean: float | None = col("Mean GPU time.", "ms")
    gpu_ms_std: float | None = col("Standard deviation of the GPU time.", "ms")
    gpu_ms_min: float | None = col("Shortest GPU time.", "ms")
    gpu_ms_max: float | None = col("Longest GPU time.", "ms")
    gpu_ms_iqr: float | None = col("Interquartile range of the GPU time.", "ms", since=2)
    gpu_ms_mad: float | None = col("Median absolute deviation of the GPU time.", "ms", since=2)
    gpu_ms_rounds: list | None = col("Median GPU time of each timing round.", "ms", since=2)
    gpu_cv: float | None = col("Coefficient of variation of the GPU times.", "ratio", old=("gpu_ms_cv",), since=3)
    gpu_cv_trimmed: float | None = col("GPU time CV inside the Tukey fences.", "ratio", old=("gpu_ms_cv_trimmed",),
                                       since=3)
    gpu_outliers: int | None = col("GPU times outside the Tukey fences.", "count", old=("gpu_ms_outliers",), since=3)
    gpu_round_spread: float | None = col("(max - min) / median of the GPU round medians.", "ratio",
                                         old=("gpu_ms_round_spread",), since=3)
    throughput_items_s: float | None = col("Items per second over the timed calls (batch / mean latency).", "items/s")
    iterations: int | None = col("Timed calls.", "count")
    samples_ms: list | None = col("Every timed call's latency, in order.", "ms")
    gpu_samples_ms: list | None = col("Every timed call's GPU time, in order.", "ms")
    rounds: list | None = col("Each timing round: median_ms, iterations, probe_us, contention, process.", since=2)
    probe_us_rounds: list | None = col("The machine-speed probe's time before each round.", "us", since=2)
    contention: dict | None = col("What else ran on the machine during the timing window (CPU shares, steal, "
                                  "load).", since=2)
    busy: str | None = col("Why the machine counted as busy while timing, or null.", since=2)
    timing_window: list | None = col("Start and end of the timing window (epoch seconds, wall clock).", "s", since=2)
    timing_windows: list | None = col("Each timing process's window (with measure.processes > 1).", "s", since=2)
    timing_processes: int | None = col("Worker processes whose rounds were pooled into this row.", "count", since=2)
    timing_core: int | None = col("The CPU the timing thread was pinned to, or null.", since=2)
    overlapped_windows: list | None = col("Timing windows on other GPUs of the node that overlapped this one "
                                          "({label, gpu, start, end, overlap_s}); the latency gate leaves out the "
                                          "rounds they overlapped.", since=3)
    lock_wait_s: float | None = col("Time waiting for the node's timing window (not counted in any limit).", "s",
                                    since=2)
    build_s: float | None = col("Time to build the backend session (engine build, compile, session creation).", "s")
    export_s: float | None = col("Time to produce the ONNX artifact (export, conversion, quantization; ~0 when "
                                 "cached).", "s")
    wall_s: float | None = col("Wall time of the variant's processes: build, judge, time.", "s", since=2)
    start_s: float | None = col("From the variant's dispatch to its worker process's start (the executor's fixed "
                                "cost: a Ray call, a fork).", "s", since=6)


class Memory(Part):
    """Memory the variant's process used."""

    peak_rss_bytes: int | None = col("Peak resident memory of the variant's process.", "bytes")
    idle_rss_bytes: int | None = col("Resident memory before the variant loaded anything of its own.", "bytes",
                                     since=2)
    rss_delta_bytes: int | None = col("What the variant added while it ran: its peak above the resident memory once "
                                      "its artifact was ready (the session, accuracy, timing, serving; not the export "
                                      "or int8 calibration, whose memory can stay in the worker); where the peak "
                                      "cannot be restarted, peak_rss_bytes - idle_rss_bytes (settings.host_memory "
                                      "says which).", "bytes", since=2)
    gpu_peak_bytes: int | None = col("Peak GPU memory (torch allocator, or NVML's per-process peak; see "
                                     "settings.gpu_memory).", "bytes")
    gpu_process_peak_bytes: int | None = col("NVML's per-process GPU memory peak (includes the CUDA context).",
                                             "bytes", since=2)


class Accuracy(Part):
    """The variant's outputs against the reference's on the same eval items: the worst output in the flat columns,
    every output and part in ``outputs``."""

    drift_max_abs: float | None = col("Largest absolute difference from the reference (worst output).")
    drift_mean_abs: float | None = col("Mean absolute difference from the reference (worst output).")
    drift_rel_l2: float | None = col("||variant - reference|| / ||reference|| (worst output).", "ratio")
    drift_cosine: float | None = col("Cosine similarity with the reference (worst output).", "ratio")
    top1_agreement: float | None = col("Share of items whose top-1 class matches the reference's.", "ratio")
    topk_agreement: float | None = col("Share of items whose reference top-1 is among the variant's top-k "
                                       "(k: topk_k).", "ratio", since=2)
    topk_k: int | None = col("The k of topk_agreement (the classification task's top_k).", since=3)
    task_accuracy: float | None = col("Accuracy against the data's labels (classification).", "ratio")
    exact_element_rate: float | None = col("Integer/boolean outputs: share of elements equal to the reference's.",
                                           "ratio", since=2)
    exact_item_rate: float | None = col("Integer/boolean outputs: share of items equal to the reference's.",
                                        "ratio", since=2)
    det_precision: float | None = col("Detections matching the reference's (IoU >= iou) / the variant's.", "ratio",
                                      since=2)
    det_recall: float | None = col("Reference detections the variant found / the reference's.", "ratio", since=2)
    det_f1: float | None = col("Harmonic mean of det_precision and det_recall.", "ratio", since=2)
    det_map50: float | None = col("mAP@0.5 against the data's box labels.", "ratio", since=2)
    ctc_exact_rate: float | None = col("CTC: share of items decoded to the reference's text.", "ratio", since=2)
    ctc_cer: float | None = col("CTC: character error rate against the reference's text.", "ratio", since=2)
    ctc_label_exact_rate: float | None = col("CTC: share of items decoded to the label text.", "ratio", since=2)
    ctc_label_cer: float | None = col("CTC: character error rate against the label text.", "ratio", since=2)
    embedding_cosine: float | None = col("Embeddings: mean cosine with the reference's.", "ratio", since=2)
    retrieval_agreement: float | None = col("Embeddings: share of items whose nearest neighbour matches the "
                                            "reference's.", "ratio", since=2)
    dense_iou: float | None = col("Dense outputs (masks): IoU of the thresholded maps with the reference's.",
                                  "ratio", since=2)
    worst_output: str | None = col("The output (or part) with the largest drift.", since=2)
    collapsed: list | None = col("Outputs that collapsed (constant, NaN, all zero) where the reference's did not.",
                                 since=2)
    outputs: dict | None = col("Every output and part: its drift and task metrics ({label: {metric: value}}).",
                               since=2)
    raw_outputs: dict | None = col("With a postprocess_outputs hook: the raw outputs' drift, before the hook.",
                                   since=2)
    drift_after_postprocess: list | None = col("Outputs judged after a post-processing hook.", since=2)
    conversion: list | None = col(
        "Every step from the reference to what the backend ran ({step, tool, version, opset, ..., drift_rel_l2}: "
        "e.g. 'tensorflow → onnx' by tf2onnx, 'onnx → onnxruntime fp16'), each with the drift it added against the "
        "step before it (worst float output's rel. L2); the step that made the fp32 ONNX names it ('onnx': its "
        "path); [] where the variant is the reference's own computation.",
        since=4)


class Serving(Part):
    """Latency under load (the spec's ``serving:``): LoadGen scenarios, dynamic batching, peak search, concurrency,
    energy, soak. The single-stream columns above keep meaning one call at a time."""

    serving: dict | None = col("Every serving measurement: LoadGen runs (scenario, target and achieved QPS, "
                               "latency percentiles under load, LoadGen's validity word and reasons, batch sizes "
                               "served), peak search probes, concurrency points, energy, soak.", since=3)
    serving_peak_qps: float | None = col("The highest QPS whose p99 met the bound, on the engine the spec deploys.",
                                         "queries/s", since=3)
    energy_j_per_item: float | None = col("Energy per item net of the idle draw (NVML on NVIDIA GPUs, RAPL on CPUs), "
                                          "the worst LoadGen run's.", "J", since=3)
    soak_rss_mb_per_min: float | None = col("The soak's resident-memory slope.", "MiB/min", since=3)
    soak_p99_drift: float | None = col("The soak's last-window p99 over its first, minus 1.", "ratio", since=3)


class ArtifactFacts(Part):
    """What the variant's artifact really is, read from the artifact."""

    model_bytes: int | None = col("Bytes of what the backend runs (ONNX file, engine, IR; the module's tensors for "
                                  "torch).", "bytes")
    params: int | None = col("Parameters of the (transformed) model.", "count")
    sparsity: float | None = col("Share of zero weights after pruning.", "ratio")
    artifact: str | None = col("The model file the backend ran: the ONNX file it consumed (in the artifact cache), "
                               "the model file as given, or a file it made of its own (OpenVINO's int8 IR; "
                               "settings.built_from names the file it was made from).", since=2)
    settings: dict | None = col("How the variant was realised, per backend and step (precision mode, providers, "
                                "engine facts, int8 graph facts, calibration, memory cap, ...).")


class Failure(Part):
    """Why a variant has no measurement."""

    error: str | None = col("What went wrong (failed, timeout) or why it was skipped.")
    failed_stage: str | None = col("The step a failed variant was in (load, transform, export, build, accuracy, "
                                   "timing).", since=2)
    exit_code: int | None = col("The worker process's exit code (negative: killed by that signal).")
    signal: str | None = col("The signal that killed the worker, or null.")


class Search(Part):
    """Where a variant came from in an ``optbench tune`` run (null in a plain run)."""

    search_step: int | None = col("The search step that proposed the candidate (0: the anchors).", "count", since=5)
    search_phase: str | None = col("anchor, calibration, escalate, bisect, level or give-back.", since=5)
    fallbacks: dict | None = col("Node groups moved off int8: {precision: [group]} (fp16, fp32); {}: none.", since=5)


PARTS: dict[str, type[Part]] = {"identity": Identity, "timing": Timing, "memory": Memory, "accuracy": Accuracy,
                          "serving": Serving, "artifact": ArtifactFacts, "failure": Failure, "search": Search}
