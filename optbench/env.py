"""The environment a run happened in: versions, CPU, GPU, driver, git commit, backend availability."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path
from typing import Any

from optbench.cache import library_versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def gpu_info() -> list[dict[str, Any]]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,temperature.gpu",
             "--format=csv,noheader,nounits"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return []
    gpus = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 6:
            gpus.append(dict(zip(["name", "driver", "memory_mib", "sm_clock_mhz", "max_sm_clock_mhz",
                                  "temperature_c"], parts)))
    return gpus


def collect_env() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "libraries": library_versions(),
        "gpus": gpu_info(),
        "commit": git_commit(),
        "hostname": platform.node(),
    }


def backend_table() -> list[dict[str, Any]]:
    from optbench.backends import all_backends

    rows = []
    for name, cls in all_backends().items():
        reason = cls.unavailable_reason()
        rows.append({"backend": name, "available": reason is None, "reason": reason or ""})
    return rows


def host_summary(env: dict[str, Any]) -> str:
    gpu = env["gpus"][0]["name"] if env.get("gpus") else "no GPU"
    return f"{env['cpu']} ({env['cpu_count']} cpus), {gpu}"
