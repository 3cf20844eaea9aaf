"""GPU state and per-process GPU memory through NVML (the ``nvidia-ml-py`` package).

Each variant runs in its own process, so the GPU memory that process holds is the variant's memory, whatever
allocator the backend uses (ONNX Runtime's BFC arena, TensorRT's, cuDNN workspaces). NVML reports it per
process; :class:`GpuMonitor` polls it from a thread while the variant is built and checked, and reads it once
more after the timing loop (the thread is paused while latency is sampled, so it cannot perturb the samples).

It also reads the GPU's SM clock, temperature, power and clock-event ("throttle") reasons at the start and
end of the variant and after the timing loop, and which other processes were on the GPU: a row whose clocks
were held down by power or heat, or which shared the GPU, carries a warning.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from optbench.row import warning

# NVML's clock-event reason bits (nvmlClocksEventReason*, formerly nvmlClocksThrottleReason*).
EVENT_REASONS = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clocks_setting",
}
# Reasons that mean the measured clocks were below what the GPU could otherwise run at.
THROTTLING = {"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown", "hw_power_brake_slowdown"}


def gpu_index(device: str) -> int:
    """The physical GPU a ``cuda`` / ``cuda:N`` device is: the N-th entry of CUDA_VISIBLE_DEVICES where that is set
    (Ray and schedulers set it), else N."""
    n = int(device.split(":")[1]) if ":" in device else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return int(visible[n]) if n < len(visible) and visible[n].isdigit() else n


def nvml_unavailable_reason() -> str | None:
    try:
        import pynvml
    except ImportError:
        return "nvidia-ml-py is not installed (pip install nvidia-ml-py, or optbench[gpu])"
    try:
        pynvml.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded on a host without a GPU driver
        return f"NVML could not start: {e}"
    return None


def decode_reasons(mask: int) -> list[str]:
    return [name for bit, name in EVENT_REASONS.items() if mask & bit]


class GpuMonitor:
    """Per-process GPU memory peak and GPU state for one variant on one CUDA device.

    ``GpuMonitor.open(index)`` returns None (with ``GpuMonitor.why``) when NVML cannot be used; callers then
    record no NVML figures rather than guessing.
    """

    why: str | None = None

    def __init__(self, pynvml: Any, index: int, interval_s: float = 0.01) -> None:
        self.nv, self.index, self.interval_s = pynvml, index, interval_s
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        self.pid = os.getpid()
        self.peak_bytes = 0
        self.matched = False  # whether NVML listed this process (not so in some container PID namespaces)
        self.others: set[int] = set()
        self.states: dict[str, dict[str, Any]] = {}
        self._running = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def open(cls, index: int = 0, interval_s: float = 0.01) -> GpuMonitor | None:
        cls.why = nvml_unavailable_reason()
        if cls.why is not None:
            return None
        import pynvml

        try:
            return cls(pynvml, index, interval_s)
        except Exception as e:
            cls.why = f"NVML has no device {index}: {e}"
            return None

    # -- readings -------------------------------------------------------------------------------------------
    def _processes(self) -> list[Any]:
        procs = []
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                procs += list(getattr(self.nv, fn)(self.handle))
            except Exception:  # not supported on this device/driver
                pass
        return procs

    def sample_memory(self) -> None:
        """One reading of this process's GPU memory (and of who else is on the GPU)."""
        for p in self._processes():
            if p.pid == self.pid:
                self.matched = True
                used = p.usedGpuMemory
                if used is not None and used != getattr(self.nv, "NVML_VALUE_NOT_AVAILABLE", -1):
                    self.peak_bytes = max(self.peak_bytes, int(used))
            else:
                self.others.add(int(p.pid))

    def state(self, label: str) -> dict[str, Any]:
        """Clocks, temperature, power and clock-event reasons now, remembered under ``label``."""
        nv, h = self.nv, self.handle
        s: dict[str, Any] = {}
        for key, fn in (
            ("sm_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_SM)),
            ("max_sm_clock_mhz", lambda: nv.nvmlDeviceGetMaxClockInfo(h, nv.NVML_CLOCK_SM)),
            ("mem_clock_mhz", lambda: nv.nvmlDeviceGetClockInfo(h, nv.NVML_CLOCK_MEM)),
            ("temperature_c", lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
            ("power_w", lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000.0),
            ("utilization_pct", lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu),
        ):
            try:
                s[key] = fn()
            except Exception:
                s[key] = None
        reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
            nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
        try:
            s["clock_event_reasons"] = decode_reasons(int(reasons_fn(h))) if reasons_fn else None
        except Exception:
            s["clock_event_reasons"] = None
        self.sample_memory()
        s["other_pids"] = sorted(self.others)
        self.states[label] = s
        return s

    # -- the polling thread -----------------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._running.wait()
            if self._stop.is_set():
                break
            try:
                self.sample_memory()
            except Exception:
                pass
            time.sleep(self.interval_s)

    def start(self) -> GpuMonitor:
        self.state("start")
        self._running.set()
        self._thread = threading.Thread(target=self._loop, name="optbench-nvml", daemon=True)
        self._thread.start()
        return self

    def pause(self) -> None:
        """Stop polling (around the timing loop); one reading is taken now."""
        self._running.clear()
        self.sample_memory()

    def resume(self) -> None:
        self.sample_memory()
        self._running.set()

    def stop(self) -> None:
        self._stop.set()
        self._running.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        self.state("end")

    # -- what goes into the row -------------------------------------------------------------------------------
    def warnings(self) -> list[dict[str, str]]:
        out = []
        for label, s in self.states.items():
            hit = sorted(THROTTLING & set(s.get("clock_event_reasons") or []))
            if hit and label != "start":
                out.append(warning("gpu_clocks", f"GPU clocks were held down ({', '.join(hit)}) at '{label}': "
                           f"SM {s.get('sm_clock_mhz')} of {s.get('max_sm_clock_mhz')} MHz, {s.get('temperature_c')} °C"))
        if self.others and (self.matched or len(self.others) > 1):
            out.append(warning("gpu_shared", f"other processes were on the GPU during this variant (pids "
                                             f"{sorted(self.others)}): its timings may be contended"))
        return out

    def summary(self) -> dict[str, Any]:
        out = {"index": self.index, "states": self.states, "poll_interval_s": self.interval_s,
               "process_peak_bytes": self.peak_bytes if self.matched else None}
        if not self.matched:
            out["note"] = ("NVML did not list this process id (a container's PID namespace?): "
                           "per-process GPU memory is not attributable here")
        return out
