"""The clocks every part of optbench reads outside ``measure/`` (nothing else reads a clock): a monotonic clock
for deadlines, durations and ETAs, the wall clock for stamps that compare across processes and machines. Timing
itself is measurement and lives in ``measure/``."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def monotonic() -> float:
    """Seconds on a clock that never goes back: deadlines and durations inside one process."""
    return time.monotonic()


def wall() -> float:
    """Seconds since the epoch (UTC): timing windows of processes on one node, and run start times, compare."""
    return time.time()


def process_age_s() -> float | None:
    """Seconds since this process started (Linux: its start time in /proc against the boot-time clock), None
    where that cannot be read. A worker's limit counts from its start."""
    import os

    try:
        fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # starttime, the 22nd field, in ticks after boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def since(t0: float) -> float:
    """Seconds on the monotonic clock since ``t0`` (a :func:`monotonic` reading)."""
    return time.monotonic() - t0


def stamp(fmt: str = "%Y-%m-%d %H:%M") -> str:
    """Local date and time as text (a report's "generated" line, a run directory's name)."""
    return datetime.now().strftime(fmt)


def iso_utc() -> str:
    """The UTC time as ISO 8601."""
    return datetime.now(UTC).isoformat()


def iso_local() -> str:
    """The local time as ISO 8601 to the second (JUnit's timestamp)."""
    return datetime.now().isoformat(timespec="seconds")
