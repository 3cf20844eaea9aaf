"""Energy per item from a cumulative energy counter: NVML's on NVIDIA GPUs, RAPL's on CPUs where readable.

Both are counters of joules used since some origin; a window's energy is the difference of two readings. The
device draws power when idle too, so the idle draw is measured first (a pause of ``idle_s`` with nothing
running) and its share of the window subtracted: what is left is the energy the work cost, divided by the items
it served. Where no counter can be read, the reading is a sentence saying why, never a number.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

POWERCAP = Path("/sys/class/powercap")


class EnergyCounter(Protocol):
    source: str

    def joules(self) -> float: ...


class NvmlCounter:
    """``nvmlDeviceGetTotalEnergyConsumption``: mJ since the driver loaded (Volta and newer)."""

    def __init__(self, nvml: Any, index: int) -> None:
        self.nv, self.handle, self.source = nvml, nvml.nvmlDeviceGetHandleByIndex(index), f"nvml:{index}"

    def joules(self) -> float:
        return self.nv.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1000.0


class RaplCounter:
    """The package zones of ``/sys/class/powercap`` (``intel-rapl:N``; their subzones are parts of them), each
    µJ counter followed across its wrap-around at ``max_energy_range_uj``."""

    def __init__(self, zones: list[Path]) -> None:
        self.zones = zones
        self.ranges = [int((z / "max_energy_range_uj").read_text()) for z in zones]
        self.last = [self._read(z) for z in zones]
        self.total_uj = 0
        self.source = "rapl:" + ",".join(z.name for z in zones)

    @staticmethod
    def _read(zone: Path) -> int:
        return int((zone / "energy_uj").read_text())

    def joules(self) -> float:
        for i, z in enumerate(self.zones):
            now = self._read(z)
            self.total_uj += now - self.last[i] if now >= self.last[i] else now + self.ranges[i] - self.last[i]
            self.last[i] = now
        return self.total_uj / 1e6


def open_counter(device: str, powercap: Path = POWERCAP) -> tuple[EnergyCounter | None, str]:
    """The energy counter of ``device`` ('cpu', 'cuda', 'cuda:N') and its name, or None and why not."""
    if device.startswith("cuda"):
        from optbench.measure.gpu import gpu_index, nvml_unavailable_reason

        if why := nvml_unavailable_reason():
            return None, f"unavailable because {why}"
        import pynvml

        try:
            counter = NvmlCounter(pynvml, gpu_index(device))
            counter.joules()
        except Exception as e:  # NotSupported before Volta, or no such GPU
            return None, f"unavailable because NVML cannot read the GPU's energy counter: {e}"
        return counter, counter.source
    if not powercap.is_dir():
        return None, (f"unavailable because {powercap} does not exist: this machine exposes no RAPL energy counters "
                      f"(usual in virtual machines and containers without the intel_rapl driver)")
    zones = sorted(z for z in powercap.glob("intel-rapl:*") if z.name.count(":") == 1)
    if not zones:
        return None, f"unavailable because {powercap} holds no RAPL package zone (intel-rapl:N)"
    try:
        counter = RaplCounter(zones)
    except PermissionError:
        return None, (f"unavailable because {zones[0]}/energy_uj is not readable by this user (Linux makes RAPL "
                      f"counters root-only since the PLATYPUS fix)")
    except (OSError, ValueError) as e:
        return None, f"unavailable because the RAPL counters cannot be read: {e}"
    return counter, counter.source


@dataclass
class Window:
    joules: float
    at: float


class EnergyMeter:
    """Windows of energy over a counter, net of the idle draw measured by :meth:`measure_idle`."""

    def __init__(self, counter: EnergyCounter, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.counter, self.clock, self.sleep = counter, clock, sleep
        self.idle_w: float | None = None
        self.idle_s = 0.0

    def measure_idle(self, seconds: float = 1.0) -> float:
        """Watts drawn while nothing runs (call it before the work, with the device otherwise quiet)."""
        w = self.start()
        self.sleep(seconds)
        joules, elapsed = self.counter.joules() - w.joules, self.clock() - w.at
        self.idle_w, self.idle_s = (joules / elapsed if elapsed > 0 else 0.0), elapsed
        return self.idle_w

    def start(self) -> Window:
        return Window(self.counter.joules(), self.clock())

    def stop(self, w: Window, items: int) -> dict:
        """The window's energy: total joules, the idle share subtracted (``net_j``), and J per item."""
        joules, seconds = self.counter.joules() - w.joules, self.clock() - w.at
        net = joules - (self.idle_w or 0.0) * seconds
        return {"source": self.counter.source, "joules": round(joules, 6), "seconds": round(seconds, 6),
                "idle_w": self.idle_w, "net_j": round(net, 6),
                "j_per_item": net / items if items else None, "items": items}

    def describe(self) -> dict:
        return {"source": self.counter.source, "idle_w": self.idle_w, "idle_s": round(self.idle_s, 3)}
