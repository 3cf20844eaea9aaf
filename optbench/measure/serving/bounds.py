"""What a spec's ``serving:`` section asks of the machine and of a variant's time limit, checked when the spec is
read (``plan`` and ``run`` alike), before anything runs.

Serving runs in the variant's worker after its single-stream timing: a section that exhausts the worker's memory
or outlives ``measure.timeout_s`` loses the whole row, single-stream figures included. LoadGen generates a run's
queries before it starts (a server run at ``qps`` for ``min_duration_ms`` is ``qps * min_duration`` queries, at
least ``min_query_count``), the concurrency sweep starts one thread per client, and the section's runs last at
least their minimum durations. Each bound is named in the error with what the machine holds.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

QUERY_BYTES = 1024  # LoadGen's state per query (its schedule, sample ids, timestamps): a generous estimate
MEMORY_SHARE = 0.5  # LoadGen's queries may take at most this share of the machine's memory
THREAD_SHARE = 0.5  # concurrency clients may be at most this share of the threads the process may start


@dataclass(frozen=True)
class Machine:
    memory_bytes: int
    threads: int

    @classmethod
    def here(cls) -> Machine:
        from optbench.measure.memory import proc_kib_field

        return cls(proc_kib_field("/proc/meminfo", "MemTotal") or os.sysconf("SC_PAGE_SIZE") * os.sysconf(
            "SC_PHYS_PAGES"), _thread_limit())


def _thread_limit() -> int:
    """The threads this process may start: the smallest of the user's process limit, the kernel's and the
    cgroup's."""
    import resource

    limits = []
    soft = resource.getrlimit(resource.RLIMIT_NPROC)[0]
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    for path in ("/proc/sys/kernel/threads-max", "/sys/fs/cgroup/pids.max"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit():
            limits.append(int(text))
    return min(limits) if limits else 32_768


def planned_queries(s: Any) -> list[tuple[str, int]]:
    """(field, queries) of each LoadGen run the section plans whose size is known before it runs."""
    min_s = s.min_duration_ms / 1000.0
    out = [("serving.min_query_count", s.min_query_count)]
    out += [("serving.qps", max(s.min_query_count, math.ceil(q * min_s))) for q in s.qps]
    if s.offline_expected_qps is not None and "offline" in s.scenarios:
        out.append(("serving.offline_expected_qps", math.ceil(1.1 * s.offline_expected_qps * min_s)))
    if "multi-stream" in s.scenarios:
        out.append(("serving.multi_stream_samples", s.min_query_count * s.multi_stream_samples))
    return out


def least_seconds(s: Any) -> tuple[float, str]:
    """The least wall time (s) the section takes per served variant, and what it is made of: every LoadGen run
    lasts at least min_duration_ms, a peak search at least two of them, each concurrency level concurrency_s."""
    min_s = s.min_duration_ms / 1000.0
    runs = sum(len(s.qps) if name == "server" else 1 for name in s.scenarios if name != "soak") + 2 * s.peak
    per_engine = runs * min_s + len(s.concurrency) * (s.concurrency_s + 0.2)
    engines = 2 if s.dynamic_batching is not None and s.compare_unbatched else 1
    soak = s.soak_s if "soak" in s.scenarios else 0.0
    idle = s.idle_s if s.energy else 0.0
    parts = [f"{runs} LoadGen run(s) of min_duration_ms {s.min_duration_ms}" if runs else "",
             f"{len(s.concurrency)} concurrency level(s) of {s.concurrency_s:g} s" if s.concurrency else "",
             f"x{engines} (dynamic batching and without)" if engines > 1 else "",
             f"soak_s {s.soak_s:g}" if soak else "", f"idle_s {s.idle_s:g}" if idle else ""]
    return engines * per_engine + soak + idle, ", ".join(p for p in parts if p)


def serving_problem(s: Any, timeout_s: float, machine: Machine) -> tuple[str, str] | None:
    """(field, why) of the first bound the section passes, or None."""
    cap = int(machine.memory_bytes * MEMORY_SHARE / QUERY_BYTES)
    for field, queries in planned_queries(s):
        if queries > cap:
            return field, (f"a LoadGen run of {queries:,} queries, more than the {cap:,} this machine's memory "
                           f"holds ({machine.memory_bytes / 2**30:.0f} GiB; LoadGen makes every query before it "
                           f"starts, about {QUERY_BYTES} bytes each)")
    threads = max(1, int(machine.threads * THREAD_SHARE))
    if s.concurrency and max(s.concurrency) > threads:
        return "serving.concurrency", (f"{max(s.concurrency):,} clients (a thread each), more than the {threads:,} "
                                       f"this machine lets a process start (half its limit of {machine.threads:,})")
    least, made_of = least_seconds(s)
    if least >= timeout_s:
        return "serving", (f"serving takes at least {least:,.0f} s per served variant ({made_of}), not less than "
                           f"measure.timeout_s ({timeout_s:g} s), and a variant past its time limit loses its row; "
                           f"raise measure.timeout_s above {least:,.0f} s plus the variant's build and timing, or "
                           f"shorten serving")
    return None
