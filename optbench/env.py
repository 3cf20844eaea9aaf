"""The environment a run happened in: versions, CPU, GPU, driver, git commit, backend availability."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Callable
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


CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_bf16", "amx_int8", "amx_tile", "fma",
             "f16c")


def cpu_details() -> dict[str, Any]:
    """The CPU as py-cpuinfo reads it (pytest-benchmark's machine_info takes it as is): brand, arch, cache,
    the flags that decide which int8/bf16/fp16 kernels a runtime can pick."""
    try:
        import cpuinfo

        info = cpuinfo.get_cpu_info()
    except Exception as e:  # py-cpuinfo missing or failing on an odd platform: the report says so
        return {"error": f"{e.__class__.__name__}: {e}"}
    keep = ("brand_raw", "vendor_id_raw", "arch", "bits", "count", "hz_advertised_friendly", "hz_actual_friendly",
            "l2_cache_size", "l3_cache_size", "family", "model", "stepping")
    out = {k: info[k] for k in keep if k in info}
    out["flags"] = sorted(f for f in info.get("flags", []) if f in CPU_FLAGS)
    return out


def collect_env() -> dict[str, Any]:
    import os

    return {
        "cpuinfo": cpu_details(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "libraries": library_versions(),
        "runtimes": runtime_versions(),
        "gpus": gpu_info(),
        "commit": git_commit(),
        "hostname": platform.node(),
    }


def runtime_versions() -> dict[str, str]:
    """Every runtime a backend imports, by its installed metadata (nothing imported): a baseline that ran with
    another OpenVINO or TVM is noticed by ``check``. An artifact's cache key keeps only the versions of what built it
    (``optbench.cache.BUILT_BY``; a backend's own artifacts key their runtime's version)."""
    from optbench.backends import all_backends

    out: dict[str, str] = {}
    for cls in all_backends().values():
        out.update(cls.installed()[1])
    return dict(sorted(out.items()))


def backend_table(deep: bool = False, say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per backend. Quick (default): installed or not, from package metadata. ``deep``: each runtime
    imported, its devices probed: whether it runs and builds here, and why not (``say`` told of each probe, as it
    starts: importing a runtime takes seconds)."""
    from optbench.backends import all_backends

    rows = []
    backends = all_backends()
    for i, (name, cls) in enumerate(backends.items(), 1):
        missing, versions = cls.installed()
        row = {"backend": name, "installed": missing is None,
               "versions": ", ".join(f"{k} {v}" for k, v in versions.items()) or "-"}
        if deep:
            if say is not None:
                say(f"[{i}/{len(backends)}] backend {name}: " +
                    ("not installed" if missing else "importing its runtime, probing its devices"))
            reason = missing or cls.unavailable_reason()
            build = cls.build_unavailable_reason() if reason else None
            row.update(available=reason is None, builds=build is None, reason=reason or "")
        else:
            row["reason"] = missing or ""
        rows.append(row)
    return rows


def host_summary(env: dict[str, Any]) -> str:
    gpu = env["gpus"][0]["name"] if env.get("gpus") else "no GPU"
    return f"{env['cpu']} ({env['cpu_count']} cpus), {gpu}"


def source_table(deep: bool = False, say: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """One row per model source: the framework whose runtime computes its reference (a registered backend), how an
    ONNX of it is made, and whether both work here (quick: installed, from package metadata; ``deep``: imported,
    ``say`` told of each as it starts)."""
    import importlib.util
    import typing

    from optbench.backends import reference_backend
    from optbench.spec.models import ModelSpec

    rows = []
    sources = typing.get_args(typing.get_args(ModelSpec)[0])
    for i, cls in enumerate(sources, 1):
        kind = cls.kind
        ref = reference_backend(kind.framework)
        missing, _ = ref.installed()
        if deep and say is not None:
            say(f"[{i}/{len(sources)}] model source {typing.get_args(cls.model_fields['source'].annotation)[0]}: "
                f"its reference runtime {ref.name}" + (" not installed" if missing else ", importing it"))
        reason = missing or (ref.unavailable_reason() if deep else None)
        gone = [m for m in kind.converts_with if importlib.util.find_spec(m) is None]
        onnx = kind.onnx or "none"
        if gone:
            onnx += f" (not installed: {', '.join(gone)}; install the 'tensorflow' extra)"
        rows.append({"source": typing.get_args(cls.model_fields["source"].annotation)[0], "reference": ref.name,
                     "available": reason is None, "onnx": onnx if kind.onnx else f"none: {kind.no_onnx}",
                     "reason": f"its reference runtime: {reason}" if reason else ""})
    return rows
