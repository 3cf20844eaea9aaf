"""The spec's ``serving:`` section: latency under load, dynamic batching, a concurrency sweep, energy, a soak.

Each variant that the section selects is served, after its single-stream timing, on the same built session:
LoadGen drives the scenarios (see :mod:`optbench.measure.serving`). The defaults are short enough for CI
(LoadGen then calls its runs INVALID by its rules, and the rows say so); raise ``min_duration_ms`` and
``min_query_count`` for results LoadGen accepts (MLPerf asks 600,000 ms and 270,336 queries for a server run).
A section the machine cannot hold (LoadGen's queries past half its memory, more concurrency clients than threads it
allows) or that outlasts ``measure.timeout_s`` is refused when the spec is read (:mod:`optbench.measure.serving.bounds`);
a serving part that still runs past what the time limit leaves it ends there, keeping the scenarios that finished.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Scenario = Literal["single-stream", "multi-stream", "server", "offline", "soak"]
Positive = Annotated[float, Field(strict=True, gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True, gt=0)]
BatchSize = Annotated[int, Field(strict=True, gt=0, le=4096)]  # a padded group is this many items, in memory


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DynamicBatching(_Strict):
    max_batch: Count = Field(8, le=4096, description="Requests grouped into one call at most.")
    max_delay_ms: float = Field(2.0, ge=0, le=60_000, allow_inf_nan=False,
                                description="How long the oldest request may wait for others before its group "
                                            "runs (ms).")
    sizes: list[BatchSize] | None = Field(
        None, min_length=1, description="The batch sizes the variant runs (a static engine's built sizes); groups "
                                        "are padded to the nearest size above. Absent: the sizes 1, 2, 4, ... up to "
                                        "max_batch are tried once on the built session and those that run are used.")

    @model_validator(mode="after")
    def _sizes(self) -> DynamicBatching:
        if self.sizes is not None and len(set(self.sizes)) != len(self.sizes):
            raise ValueError(f"each dynamic_batching.sizes value once ({self.sizes})")
        return self


class ServingSpec(_Strict):
    scenario: Scenario | list[Scenario] = Field(
        "server", description="Scenarios to run: server (Poisson arrivals at each of 'qps', 99th percentile "
                              "within p99_ms), offline (everything at once: throughput), single-stream, "
                              "multi-stream (groups of multi_stream_samples), soak (soak_s of closed-loop "
                              "serving: latency drift and memory growth).")
    variants: list[str] = Field(["*"], min_length=1, description="Variant id patterns (fnmatch) that are served.")
    qps: list[Positive] = Field(default_factory=list, description="Target QPS values of the server scenario.")
    p99_ms: Positive | None = Field(None, description="Bound on the 99th percentile latency (ms) of the server "
                                                      "scenario and of the peak search.")
    dynamic_batching: DynamicBatching | None = Field(
        None, description="A dynamic batcher in front of the session; the scenarios then run with it and, with "
                          "compare_unbatched, also without it (what it buys).")
    compare_unbatched: bool = Field(True, description="With dynamic_batching: run every scenario without it too.")
    instances: Count = Field(1, le=64, description="Execution lanes (Triton's model instances) fed by one batcher: "
                                                   "each its own CUDA stream (torch) or its own session (ONNX "
                                                   "Runtime), a thread of its own on the CPU; backends without "
                                                   "lanes of their own run every lane through one session, one "
                                                   "call at a time.")
    lane_processes: bool = Field(False, description="Each lane in a process of its own, which opens the variant's "
                                                    "session again from the run's files (its own weights and CUDA "
                                                    "context) and runs it; the serving process hands it each "
                                                    "batch's indices over a socket. Lanes on threads share one "
                                                    "interpreter: an eager model, which launches its kernels from "
                                                    "Python, gains little from a second one (Triton's Python backend "
                                                    "runs each instance in a process for this reason).")
    cuda_graphs: bool = Field(False, description="torch on CUDA: each lane captures one CUDA graph per batch size "
                                                 "while it warms and replays it while serving (one launch per "
                                                 "batch). Other backends refuse it: ONNX Runtime has its own "
                                                 "cuda_graph option, torch-compile its reduce-overhead mode.")
    switch_interval_ms: float = Field(
        0.5, gt=0, le=100, allow_inf_nan=False,
        description="Python's thread switch interval while serving (sys.setswitchinterval), restored after: the "
                    "longest a thread that wants the interpreter (LoadGen's issue callback, a lane waking up) waits "
                    "for one running Python code. Python's default, 5 ms, is added to the tail latency of requests "
                    "while a lane runs an eager model's Python.")
    peak: bool = Field(False, description="Search the highest server QPS whose p99 meets p99_ms.")
    peak_tolerance: float = Field(0.1, gt=0, le=1, description="The peak search stops when its bracket is this "
                                                                "close (relative).")
    peak_probes: Count = Field(10, le=50, description="Server runs the peak search may make at most.")
    concurrency: list[Count] = Field(default_factory=list, description="Closed-loop client counts of the "
                                                                       "concurrency sweep (perf_analyzer style).")
    concurrency_s: Positive = Field(1.0, le=3600, description="Seconds per concurrency level.")
    soak_s: Positive = Field(30.0, le=7 * 24 * 3600, description="Soak duration (s), with 'soak' in scenario.")
    soak_window_s: Positive = Field(5.0, le=3600, description="Soak window (s): first vs last window, one memory "
                                                              "reading per window.")
    energy: bool = Field(True, description="Read the energy counter (NVML on GPUs, RAPL on CPUs) over every "
                                           "LoadGen run, net of the idle draw measured before: J per item.")
    idle_s: Positive = Field(1.0, le=600, description="Seconds of idle before the runs, to measure the idle draw.")
    samples: Count = Field(64, le=100_000, description="Eval items LoadGen draws its samples from (one item each).")
    min_duration_ms: Count = Field(1000, description="LoadGen's minimum duration of a run (ms).")
    max_duration_ms: Count = Field(10_000, description="LoadGen's maximum duration of a run (ms).")
    min_query_count: Count = Field(32, description="LoadGen's minimum query count of a run.")
    multi_stream_samples: Count = Field(8, le=4096, description="Samples per query of the multi-stream scenario.")
    offline_expected_qps: Positive | None = Field(
        None, description="Offline: the throughput LoadGen plans the run for (it issues that many samples a second "
                          "of min_duration_ms; a run that ends sooner is INVALID); absent: twice the engine's "
                          "throughput in a burst measured before the runs.")

    @property
    def scenarios(self) -> list[str]:
        return [self.scenario] if isinstance(self.scenario, str) else list(self.scenario)

    @model_validator(mode="after")
    def _consistent(self) -> ServingSpec:
        names = self.scenarios
        if not names or len(set(names)) != len(names):
            raise ValueError(f"each scenario named once in serving.scenario ({names})")
        if "server" in names and not (self.qps or self.peak):
            raise ValueError("target QPS values in serving.qps for the 'server' scenario (or peak: true)")
        if self.qps and "server" not in names:
            raise ValueError(f"'server' in serving.scenario ({names}), since serving.qps is set")
        if ("server" in names or self.peak) and self.p99_ms is None:
            raise ValueError("serving.p99_ms, the bound (ms) on the 99th percentile latency that the server "
                             "scenario and the peak search need")
        if len(set(self.qps)) != len(self.qps):
            raise ValueError(f"each serving.qps value once ({self.qps})")
        if len(set(self.concurrency)) != len(self.concurrency):
            raise ValueError(f"each serving.concurrency value once ({self.concurrency})")
        if self.min_duration_ms > self.max_duration_ms:
            raise ValueError(f"serving.min_duration_ms ({self.min_duration_ms}) at most serving.max_duration_ms "
                             f"({self.max_duration_ms})")
        if "soak" in names and self.soak_window_s > self.soak_s:
            raise ValueError(f"serving.soak_window_s ({self.soak_window_s:g}) at most serving.soak_s "
                             f"({self.soak_s:g})")
        return self
