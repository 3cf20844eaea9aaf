"""Soak: serve for a long while and see whether latency and memory stay flat.

One client in closed loop for ``seconds``, in windows of ``window_s``: each window keeps its request count,
p50/p99 latency, errors and the process's resident memory at its end (and the GPU memory NVML reports for this
process, where it can). The verdict's figures: the last full window's p99 against the first's (drift), and the
memory growth slope in bytes per minute, a least-squares line over the windows after the first (the first
holds the warm-up's allocations, which are not a leak). Latencies are kept per window only, so the harness's
own memory stays flat however long it runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from optbench.measure.memory import current_rss_bytes


@dataclass
class SoakResult:
    """A soak's verdict figures: latency in ms, memory in bytes, slopes in bytes per minute."""

    seconds: float
    window_s: float
    requests: int
    errors: int
    first_error: str | None
    first_p50_ms: float | None
    first_p99_ms: float | None
    last_p50_ms: float | None
    last_p99_ms: float | None
    p99_drift: float | None            # last window's p99 / first window's - 1
    rss_start_bytes: int
    rss_end_bytes: int
    rss_slope_bytes_per_min: float | None
    gpu_slope_bytes_per_min: float | None
    gpu_note: str | None
    windows: list[dict] = field(default_factory=list)


def slope_per_min(t_s: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of ``values`` over ``t_s`` (seconds), per minute; None with fewer than 2 points."""
    if len(t_s) < 2 or np.ptp(np.asarray(t_s, dtype=float)) == 0:
        return None
    return float(np.polyfit(np.asarray(t_s, dtype=float), np.asarray(values, dtype=float), 1)[0] * 60.0)


def summarize(windows: list[dict], seconds: float, window_s: float, errors: int, first_error: str | None,
              gpu_note: str | None = None) -> SoakResult:
    """The verdict figures from the windows (each {t_s, requests, p50_ms, p99_ms, rss_bytes[, gpu_bytes]})."""
    full = [w for w in windows if w["requests"]]
    first, last = (full[0], full[-1]) if full else ({}, {})
    steady = windows[1:] if len(windows) > 2 else windows
    gpu = [w for w in steady if w.get("gpu_bytes") is not None]
    drift = (last["p99_ms"] / first["p99_ms"] - 1.0) if full and first["p99_ms"] else None
    return SoakResult(
        seconds=seconds, window_s=window_s, requests=sum(w["requests"] for w in windows), errors=errors,
        first_error=first_error, first_p50_ms=first.get("p50_ms"), first_p99_ms=first.get("p99_ms"),
        last_p50_ms=last.get("p50_ms"), last_p99_ms=last.get("p99_ms"), p99_drift=drift,
        rss_start_bytes=windows[0]["rss_bytes"] if windows else 0,
        rss_end_bytes=windows[-1]["rss_bytes"] if windows else 0,
        rss_slope_bytes_per_min=slope_per_min([w["t_s"] for w in steady], [w["rss_bytes"] for w in steady]),
        gpu_slope_bytes_per_min=slope_per_min([w["t_s"] for w in gpu], [w["gpu_bytes"] for w in gpu]),
        gpu_note=gpu_note, windows=windows)


def soak(engine: Callable, samples: int, seconds: float, window_s: float = 5.0,
         clock: Callable[[], float] = time.perf_counter, rss: Callable[[], int] = current_rss_bytes,
         gpu_bytes: Callable[[], int | None] | None = None, gpu_note: str | None = None) -> SoakResult:
    """Call ``engine(index)`` over the ``samples`` staged samples back to back for ``seconds``; window by window,
    see the module."""
    windows: list[dict] = []
    lat: list[float] = []
    errors, first_error, i = 0, None, 0
    start = clock()
    edge = start + window_s
    while True:
        t0 = clock()
        if t0 >= edge or t0 - start >= seconds:
            arr = np.asarray(lat)
            windows.append({"t_s": round(t0 - start, 3), "requests": len(lat),
                            "p50_ms": float(np.percentile(arr, 50)) if len(arr) else None,
                            "p99_ms": float(np.percentile(arr, 99)) if len(arr) else None, "rss_bytes": rss(),
                            **({"gpu_bytes": gpu_bytes()} if gpu_bytes else {})})
            lat.clear()
            edge += window_s
            if t0 - start >= seconds:
                break
        try:
            engine(i % samples)
        except Exception as e:  # a soak counts errors; it does not stop at the first
            errors += 1
            first_error = first_error or f"{type(e).__name__}: {e}"[:300]
        lat.append((clock() - t0) * 1000.0)
        i += 1
    return summarize(windows, seconds, window_s, errors, first_error, gpu_note)


def nvml_process_bytes(device: str) -> tuple[Callable[[], int | None] | None, str | None]:
    """A reader of the GPU memory NVML says this process and its lane processes (``serving.lane_processes``) hold on
    ``device``, or None and why not."""
    if not device.startswith("cuda"):
        return None, "GPU memory not read: the variant runs on the CPU"
    from optbench.measure.gpu import gpu_index, nvml_unavailable_reason

    if why := nvml_unavailable_reason():
        return None, f"GPU memory not read: {why}"
    import pynvml

    handle, pid = pynvml.nvmlDeviceGetHandleByIndex(gpu_index(device)), os.getpid()

    from optbench.measure.serving.process_lane import live_pids

    def read() -> int | None:
        ours = {pid} | live_pids()
        held = [int(p.usedGpuMemory or 0) for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid in ours]
        return sum(held) if held else None

    return read, None
