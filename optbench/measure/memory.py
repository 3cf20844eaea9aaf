"""Memory and size readings (bytes)."""

from __future__ import annotations

import resource
import sys
from pathlib import Path


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (each variant runs in its own process)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def restart_peak_rss() -> int | None:
    """Start this process's peak resident size afresh (Linux 4.0+: ``5`` written to /proc/self/clear_refs sets
    VmHWM to the present VmRSS), so that :func:`peak_rss_since_restart` reads the peak from here on; returns the
    resident size it restarted from, None where it cannot (no /proc, not allowed). Memory freed before it is handed
    back to the system first (glibc's malloc keeps freed heap resident otherwise)."""
    import gc

    gc.collect()
    _trim_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    return proc_kib_field("/proc/self/status", "VmHWM")


def _trim_heap() -> None:
    """glibc's ``malloc_trim(0)``: free heap pages back to the system (nothing where the C library is not glibc)."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_rss_since_restart() -> int | None:
    """The peak resident size since :func:`restart_peak_rss` (VmHWM), None where /proc does not give it."""
    return proc_kib_field("/proc/self/status", "VmHWM")


def proc_kib_field(path: str, key: str) -> int | None:
    """A ``Key:  N kB`` field of a /proc file in bytes (VmRSS of /proc/self/status, MemTotal of /proc/meminfo),
    None where /proc or the field is not there."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def current_rss_bytes() -> int:
    """Resident set size of this process now (VmRSS), 0 where /proc is not there."""
    return proc_kib_field("/proc/self/status", "VmRSS") or 0


def path_bytes(path: Path | None) -> int | None:
    """Bytes on disk of a file, or of every file under a folder (ONNX external data)."""
    if path is None or not Path(path).exists():
        return None
    p = Path(path)
    if p.is_file():
        extra = sum(f.stat().st_size for f in p.parent.glob(p.name + ".data"))
        return p.stat().st_size + extra
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
