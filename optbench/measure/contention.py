"""What else the machine was doing while a variant was timed: other processes, steal, throttling, clocks.

A timing window is only as good as the machine it ran on. Around each window optbench reads, for the CPUs
this process may run on: their busy time in /proc/stat minus this process's own CPU time (= other processes'
load, in CPUs), steal and iowait, the load average, the cgroup's CPU throttling (cgroup v2 ``cpu.stat`` or
v1 ``cpu.stat``/``cpuacct``), and the CPU frequency and governor where sysfs shows them. A window during
which others used a real share of those CPUs, or the hypervisor stole time, or the cgroup was throttled,
is *busy*: its latency says more about the neighbours than about the variant.
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

# a window is busy when others used at least this share of our CPUs (and at least BUSY_MIN_CPUS of them) ...
BUSY_OTHER_SHARE = 0.15
BUSY_MIN_CPUS = 0.25
# ... or when the hypervisor stole, or the cgroup was throttled, this share of the window
BUSY_STEAL = 0.05
BUSY_THROTTLED = 0.05

_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def our_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _proc_stat(cpus: list[int]) -> dict[str, float] | None:
    """Summed jiffies (seconds) of the listed CPUs, or None where /proc/stat cannot be read."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    want = {f"cpu{i}" for i in cpus}
    total = dict.fromkeys(_FIELDS, 0.0)
    for line in lines:
        parts = line.split()
        if parts and parts[0] in want:
            for name, value in zip(_FIELDS, parts[1:]):
                total[name] += int(value) / tick
    return total


def _cgroup_throttled_s() -> float | None:
    """Seconds this cgroup was throttled so far (v2 throttled_usec; v1 throttled_time in ns), if readable."""
    for path, key, scale in (("/sys/fs/cgroup/cpu.stat", "throttled_usec", 1e-6),
                             ("/sys/fs/cgroup/cpu/cpu.stat", "throttled_time", 1e-9),
                             ("/sys/fs/cgroup/cpu,cpuacct/cpu.stat", "throttled_time", 1e-9)):
        try:
            for line in Path(path).read_text().splitlines():
                name, _, value = line.partition(" ")
                if name == key:
                    return int(value) * scale
        except (OSError, ValueError):
            continue
    return None


def _freq(cpus: list[int]) -> tuple[float | None, str | None]:
    """Mean current frequency (MHz) of our CPUs and the first governor, where cpufreq is exposed."""
    mhz, governor = [], None
    for i in cpus:
        base = Path(f"/sys/devices/system/cpu/cpu{i}/cpufreq")
        try:
            mhz.append(int((base / "scaling_cur_freq").read_text()) / 1000)
            governor = governor or (base / "scaling_governor").read_text().strip()
        except (OSError, ValueError):
            continue
    return (sum(mhz) / len(mhz) if mhz else None), governor


def _own_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


@dataclass
class Snapshot:
    wall: float
    own_cpu: float
    stat: dict[str, float] | None
    throttled: float | None
    cpus: list[int] = field(default_factory=list)


def snapshot(cpus: list[int] | None = None) -> Snapshot:
    cpus = cpus if cpus is not None else our_cpus()
    return Snapshot(time.monotonic(), _own_cpu_s(), _proc_stat(cpus), _cgroup_throttled_s(), cpus)


def between(a: Snapshot, b: Snapshot) -> dict:
    """What happened on our CPUs from snapshot ``a`` to ``b``: other processes' load (in CPUs), steal and
    iowait (shares of the window's CPU time), throttling (share of the window), load average, clocks."""
    wall = max(b.wall - a.wall, 1e-9)
    out: dict = {"window_s": round(wall, 4), "cpus": len(a.cpus)}
    if a.stat is not None and b.stat is not None:
        d = {k: b.stat[k] - a.stat[k] for k in _FIELDS}
        busy = d["user"] + d["nice"] + d["system"] + d["irq"] + d["softirq"]
        capacity = wall * len(a.cpus)
        out["other_cpus"] = round(max(0.0, busy - (b.own_cpu - a.own_cpu)) / wall, 3)
        out["steal"] = round(d["steal"] / capacity, 4)
        out["iowait"] = round(d["iowait"] / capacity, 4)
    if a.throttled is not None and b.throttled is not None:
        out["throttled"] = round((b.throttled - a.throttled) / wall, 4)
    try:
        out["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except OSError:
        pass
    mhz, governor = _freq(a.cpus)
    if mhz is not None:
        out["cpu_mhz"] = round(mhz)
    if governor:
        out["governor"] = governor
    return out


def pooled(windows: list[dict]) -> dict:
    """Several windows' readings (:func:`between`) as one window of their summed length: loads, steal, iowait
    and throttling weighted by each window's length, the last window's load average and clocks. For a process whose
    rounds alternate with another process's: the time between its windows is not its own."""
    windows = [w for w in windows if w.get("window_s")]
    if not windows:
        return {}
    total = sum(w["window_s"] for w in windows)
    out: dict = {**windows[-1], "window_s": round(total, 4), "windows": len(windows)}
    for key, digits in (("other_cpus", 3), ("steal", 4), ("iowait", 4), ("throttled", 4)):
        have = [w for w in windows if w.get(key) is not None]
        if have:
            out[key] = round(sum(w[key] * w["window_s"] for w in have) / sum(w["window_s"] for w in have), digits)
    return out


def busy_reason(c: dict) -> str | None:
    """Why a window's machine was busy, with the numbers, or None."""
    reasons = []
    other, cpus = c.get("other_cpus"), c.get("cpus", 1)
    if other is not None and other >= max(BUSY_MIN_CPUS, BUSY_OTHER_SHARE * cpus):
        reasons.append(f"other processes used {other:.2f} of {cpus} CPUs")
    if c.get("steal", 0) >= BUSY_STEAL:
        reasons.append(f"steal {c['steal']:.0%}")
    if c.get("throttled", 0) >= BUSY_THROTTLED:
        reasons.append(f"cgroup throttled {c['throttled']:.0%} of the window")
    return "; ".join(reasons) or None


# ---------------------------------------------------------------- the machine's own speed
PROBE_REPS = 150
PROBE_LOOP = 200


def speed_probe(clock=time.perf_counter) -> float:
    """Microseconds of a fixed pure-Python loop (median of PROBE_REPS): the machine's speed right now.

    Shared machines change speed for seconds at a time in ways the guest cannot see (a neighbour on the sibling
    hyperthread, frequency limits): on a 2-core VM this loop took 3.5 us in quiet periods and 5.7-6.3 us in slow
    ones, and a model timed beside it was 1.3-1.6x slower exactly then. Timed before and after each round, it tells
    rounds run on a slowed machine from rounds that measured the variant."""
    samples = []
    for _ in range(PROBE_REPS):
        t0 = clock()
        acc = 0
        for i in range(PROBE_LOOP):
            acc += i
        samples.append(clock() - t0)
    samples.sort()
    return samples[len(samples) // 2] * 1e6
