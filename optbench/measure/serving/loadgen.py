"""MLPerf LoadGen from Python: one scenario against a serving engine, timed and judged by LoadGen itself.

LoadGen (``mlcommons-loadgen``, module ``mlperf_loadgen``) generates the queries of a scenario — single-stream
(one query after another), multi-stream (groups of samples back to back), server (Poisson arrivals at a target
QPS, a bound on the 99th percentile latency) and offline (everything at once) — times every sample from its
scheduled arrival to its completion, and decides whether the run is VALID by its own rules: minimum duration,
minimum query count, the latency bound (server) and its early-stopping estimate. Runs short enough for CI are
INVALID by those rules; the result says so with LoadGen's reasons rather than hiding it.

The result is read from LoadGen's detail log (``mlperf_log_detail.txt``, one JSON record per line), which holds
every figure of the summary as typed values. LoadGen keeps global state, so one test runs at a time per process.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

SCENARIOS = {"single-stream": "SingleStream", "multi-stream": "MultiStream", "server": "Server", "offline": "Offline"}
PERCENTILES = (50, 90, 95, 99)
_ONE_TEST = threading.Lock()


def loadgen_unavailable() -> str | None:
    """Why LoadGen cannot run here (None: it can)."""
    try:
        import mlperf_loadgen  # noqa: F401
    except ImportError as e:
        return f"mlcommons-loadgen is not installed (pip install 'optbench[serving]'): {e}"
    return None


def loadgen_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlcommons-loadgen")
    except PackageNotFoundError:
        return None


@dataclass(frozen=True)
class LoadSettings:
    """What one LoadGen test is asked for. Durations in ms; ``p99_ms`` is the server's bound on the 99th
    percentile latency; ``expected_*`` let LoadGen pre-generate enough queries (too low a guess makes a run end
    before its minimum duration, which LoadGen then reports)."""

    scenario: str
    target_qps: float | None = None
    p99_ms: float | None = None
    min_duration_ms: int = 1000
    max_duration_ms: int = 10_000
    min_query_count: int = 32
    samples_per_query: int = 8
    expected_latency_ms: float = 1.0
    expected_qps: float = 100.0
    max_async_queries: int = 0
    seed: int = 0


@dataclass
class ScenarioResult:
    """One LoadGen test as LoadGen reported it. Latencies in ms (per sample; per query for multi-stream, whose
    metric is the query's), QPS in samples per second, ``duration_s`` LoadGen's own span of the SUT's work."""

    scenario: str
    batching: str
    target_qps: float | None
    achieved_qps: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    max_ms: float | None
    p99_bound_ms: float | None
    bound_met: bool | None          # LoadGen's performance constraint (server: p99 within the bound)
    validity: str                   # LoadGen's word: VALID or INVALID
    reasons: list[str]
    early_stopping: str             # LoadGen's early-stopping verdict, in its words
    early_stopping_ms: float | None  # its percentile estimate, where it gives one
    queries: int
    samples: int
    duration_s: float | None
    wall_s: float
    batch_sizes: dict[str, int]     # batch size run -> calls
    padded_items: int
    errors: int                     # samples whose call raised
    loadgen_errors: list[str]
    settings: dict[str, Any]
    log_dir: str
    energy: dict | None = None
    stalls: list[str] = field(default_factory=list)  # batches far over their warm time, compiles while serving
    batch_ms: dict[str, dict] = field(default_factory=dict)  # batch size -> calls, mean and longest call (ms)
    completions: int = 0            # QuerySamplesComplete calls (one per group, each with a list)
    cpu_s: float | None = None      # the process's CPU time over the test, every thread
    cpu_us_per_sample: float | None = None
    instances: int = 1              # execution lanes that served


@dataclass
class LoadgenLog:
    """The records of a detail log: the last value of each key, and LoadGen's errors and warnings."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)


def read_detail_log(path: Path) -> LoadgenLog:
    """Parse ``mlperf_log_detail.txt`` (``:::MLLOG {json}`` per line)."""
    log = LoadgenLog()
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            rec = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            continue
        key, value, meta = rec.get("key"), rec.get("value"), rec.get("metadata") or {}
        if meta.get("is_error"):
            log.errors.append(str(value))
        elif meta.get("is_warning"):
            log.warnings.append(str(value))
        if key == "generic_message":
            log.messages.append(str(value))
        log.values[key] = value
    return log


def _ms(ns: Any) -> float | None:
    return None if ns is None else float(ns) / 1e6


def _power_span_s(log: LoadgenLog) -> float | None:
    fmt = "%m-%d-%Y %H:%M:%S.%f"
    try:
        begin = datetime.strptime(str(log.get("power_begin")), fmt)
        end = datetime.strptime(str(log.get("power_end")), fmt)
    except ValueError:
        return None
    return (end - begin).total_seconds()


def reasons_of(log: LoadgenLog) -> list[str]:
    """Why LoadGen calls the run INVALID, criterion by criterion, in its words."""
    out = []
    if log.get("result_perf_constraints_met") is False:
        out.append("performance constraint not met: the 99th percentile latency is above the bound")
    if log.get("result_min_duration_met") is False:
        out.append("min duration not met")
    if log.get("result_min_queries_met") is False:
        out.append("min query count not met")
    if log.get("early_stopping_met") is False:
        out.append("early stopping not met:" + " ".join(str(log.get("early_stopping_result", "")).split()))
    if str(log.get("result_invalid_reason") or "").strip():
        out.append("LoadGen recommends: " + " ".join(str(log.get("result_invalid_reason")).split()))
    return out + [f"LoadGen error: {e}" for e in log.errors]


def result_from_log(log: LoadgenLog, s: LoadSettings, batching: str, wall_s: float, counts: dict[int, int],
                    padded: int, errors: int, log_dir: Path) -> ScenarioResult:
    multi = s.scenario == "multi-stream"
    kind = "per_query_latency_ns" if multi else "latency_ns"
    pct = {p: _ms(log.get(f"result_{p:.2f}_percentile_{kind}")) for p in PERCENTILES}
    per_query = log.get("effective_samples_per_query", 1) or 1
    queries = int(log.get("result_query_count") or 0)
    samples = queries * int(per_query)
    span = _power_span_s(log)
    achieved = {"server": log.get("result_completed_samples_per_sec"), "offline": log.get("result_samples_per_second"),
                "single-stream": log.get("result_qps_with_loadgen_overhead")}.get(s.scenario)
    if multi and span:
        achieved = samples / span
    estimate = {"single-stream": log.get("early_stopping_latency_ss"),
                "multi-stream": log.get("early_stopping_latency_ms")}.get(s.scenario)
    mean = log.get("result_mean_query_latency_ns" if multi else "result_mean_latency_ns")
    peak = log.get("result_max_query_latency_ns" if multi else "result_max_latency_ns")
    return ScenarioResult(
        scenario=s.scenario, batching=batching, target_qps=s.target_qps,
        achieved_qps=None if achieved is None else float(achieved),
        p50_ms=pct[50], p90_ms=pct[90], p95_ms=pct[95], p99_ms=pct[99], mean_ms=_ms(mean), max_ms=_ms(peak),
        p99_bound_ms=s.p99_ms if s.scenario == "server" else None,
        bound_met=log.get("result_perf_constraints_met"), validity=str(log.get("result_validity", "missing")),
        reasons=reasons_of(log), early_stopping=" ".join(str(log.get("early_stopping_result") or "").split()),
        early_stopping_ms=_ms(estimate) if estimate else None, queries=queries, samples=samples, duration_s=span,
        wall_s=round(wall_s, 3), batch_sizes={str(k): v for k, v in sorted(counts.items())}, padded_items=padded,
        errors=errors, loadgen_errors=list(log.errors),
        settings={k: v for k, v in vars(s).items() if v is not None}, log_dir=str(log_dir))


def loadgen_settings(lg: Any, s: LoadSettings, samples: int) -> Any:
    ts = lg.TestSettings()
    ts.scenario = getattr(lg.TestScenario, SCENARIOS[s.scenario])
    ts.mode = lg.TestMode.PerformanceOnly
    ts.min_duration_ms, ts.max_duration_ms, ts.min_query_count = s.min_duration_ms, s.max_duration_ms, s.min_query_count
    ts.performance_sample_count_override = samples
    ts.qsl_rng_seed = ts.sample_index_rng_seed = ts.schedule_rng_seed = s.seed
    if s.scenario == "server":
        ts.server_target_qps = float(s.target_qps)
        ts.server_target_latency_ns = int(s.p99_ms * 1e6)
        ts.server_target_latency_percentile = 0.99
        ts.server_max_async_queries = s.max_async_queries
    elif s.scenario == "offline":
        ts.offline_expected_qps = float(s.expected_qps)
    elif s.scenario == "single-stream":
        ts.single_stream_expected_latency_ns = max(1, int(s.expected_latency_ms * 1e6))
    else:
        ts.multi_stream_expected_latency_ns = max(1, int(s.expected_latency_ms * 1e6))
        ts.multi_stream_samples_per_query = s.samples_per_query
    return ts


def run_scenario(engine: Any, samples: int, s: LoadSettings, log_dir: Path, batching: str = "none",
                 meter: Any = None, clock: Callable[[], float] = time.perf_counter,
                 cpu_clock: Callable[[], float] = time.process_time) -> ScenarioResult:
    """One LoadGen test: LoadGen issues sample indices (``samples`` of them, one item each) by scenario ``s`` to
    ``engine`` (a :class:`~optbench.measure.serving.batcher.Batcher`): its issue thread hands each list of ids and
    indices over with one ``enqueue`` and returns, and each group's samples are completed to LoadGen with one call
    when their batch has run. ``meter`` (an :class:`~optbench.measure.serving.energy.EnergyMeter`), when given,
    reads the energy used over the test. The process's CPU time over the test (every thread: LoadGen's, the
    lanes', the runtime's) is kept per sample: what serving costs the host."""
    import mlperf_loadgen as lg

    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    failed = [0]
    completions = [0]
    lock = threading.Lock()
    respond, complete = lg.QuerySampleResponse, lg.QuerySamplesComplete

    def done(ids: Sequence[int], out: Any) -> None:
        if isinstance(out, BaseException):
            with lock:
                failed[0] += len(ids)
        with lock:
            completions[0] += 1
        complete([respond(i, 0, 0) for i in ids])

    def issue(ids: list[int], indices: list[int]) -> None:
        engine.enqueue(indices, ids, done)

    out = lg.LogOutputSettings()
    out.outdir, out.copy_summary_to_stdout = str(log_dir), False
    log_settings = lg.LogSettings()
    log_settings.log_output, log_settings.enable_trace = out, False
    with _ONE_TEST:
        engine.reset_counts()
        sut = lg.ConstructFastSUT(issue, lambda: None)
        qsl = lg.ConstructQSL(samples, samples, lambda idx: None, lambda idx: None)
        try:
            window = meter.start() if meter is not None else None
            cpu0, t0 = cpu_clock(), clock()
            lg.StartTestWithLogSettings(sut, qsl, loadgen_settings(lg, s, samples), log_settings)
            wall, cpu = clock() - t0, cpu_clock() - cpu0
        finally:
            lg.DestroyQSL(qsl)
            lg.DestroyFastSUT(sut)
        counts, padded, stalls, batch_ms = engine.counts(), engine.padded, engine.stalls(), engine.batch_times()
    log = read_detail_log(log_dir / "mlperf_log_detail.txt")
    result = result_from_log(log, s, batching, wall, counts, padded, failed[0], log_dir)
    result.stalls = stalls
    result.instances = getattr(engine, "instances", 1)
    result.reasons += [f"stall on the clock: {x}" for x in stalls]
    result.batch_ms = batch_ms
    result.completions = completions[0]
    result.cpu_s = round(cpu, 4)
    result.cpu_us_per_sample = round(cpu / result.samples * 1e6, 3) if result.samples else None
    if window is not None:
        result.energy = meter.stop(window, result.samples)
    return result
