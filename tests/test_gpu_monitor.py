"""The NVML monitor's bookkeeping (peak, pause, throttle and sharing warnings, PID namespaces).

NVML itself needs a GPU driver; here a small scripted stand-in answers the few NVML calls the monitor makes,
so the logic that turns readings into row fields is checked on any machine. The real NVML path runs in
tests/test_gpu.py on a GPU host.
"""

import os
import time
from types import SimpleNamespace

from optbench.measure.gpu import GpuMonitor, decode_reasons


class ScriptedNvml:
    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 0, 1, 0
    NVML_VALUE_NOT_AVAILABLE = 2**64 - 1

    def __init__(self, processes, reasons=0x0):
        self.processes, self.reasons = processes, reasons

    def nvmlDeviceGetHandleByIndex(self, i):
        return i

    def nvmlDeviceGetComputeRunningProcesses(self, h):
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in self.processes]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        raise RuntimeError("not supported")

    def nvmlDeviceGetClockInfo(self, h, kind):
        return 1755 if kind == self.NVML_CLOCK_SM else 2619

    def nvmlDeviceGetMaxClockInfo(self, h, kind):
        return 1980

    def nvmlDeviceGetTemperature(self, h, kind):
        return 61

    def nvmlDeviceGetPowerUsage(self, h):
        return 650_000

    def nvmlDeviceGetUtilizationRates(self, h):
        return SimpleNamespace(gpu=99)

    def nvmlDeviceGetCurrentClocksEventReasons(self, h):
        return self.reasons


def test_reason_bits_decode_to_names():
    assert decode_reasons(0x1 | 0x4 | 0x40) == ["gpu_idle", "sw_power_cap", "hw_thermal_slowdown"]
    assert decode_reasons(0) == []


def test_peak_is_the_largest_reading_of_this_process_and_pause_stops_polling():
    me = os.getpid()
    nv = ScriptedNvml([(me, 300 * 2**20)])
    mon = GpuMonitor(nv, 0, interval_s=0.001).start()
    nv.processes = [(me, 900 * 2**20)]
    time.sleep(0.05)
    nv.processes = [(me, 500 * 2**20)]
    mon.pause()
    nv.processes = [(me, 5000 * 2**20)]  # while paused nothing polls: this value is never read
    time.sleep(0.05)
    nv.processes = [(me, 400 * 2**20)]
    mon.resume()
    mon.stop()
    s = mon.summary()
    assert s["process_peak_bytes"] == 900 * 2**20
    assert set(s["states"]) == {"start", "end"}
    assert s["states"]["end"]["sm_clock_mhz"] == 1755 and s["states"]["end"]["power_w"] == 650.0
    assert mon.warnings() == []


def test_throttling_after_timing_and_other_processes_warn():
    me = os.getpid()
    nv = ScriptedNvml([(me, 2**30), (424242, 2**30)], reasons=0x4 | 0x1)
    mon = GpuMonitor(nv, 0).start()
    mon.pause()
    mon.state("after_timing")
    mon.stop()
    text = " | ".join(w["message"] for w in mon.warnings())
    assert "sw_power_cap" in text and "after_timing" in text and "1755 of 1980 MHz" in text
    assert "424242" in text
    assert "gpu_idle" not in text


def test_a_process_nvml_cannot_see_is_not_attributed_and_not_called_contention():
    nv = ScriptedNvml([(31337, 2**30)])  # another PID namespace: NVML lists the host's id for this process
    mon = GpuMonitor(nv, 0).start()
    mon.stop()
    s = mon.summary()
    assert s["process_peak_bytes"] is None and "PID namespace" in s["note"]
    assert mon.warnings() == []


def test_unavailable_nvml_says_why():
    mon = GpuMonitor.open(0)
    if mon is None:
        assert GpuMonitor.why
    else:
        assert mon.summary()["index"] == 0
