"""Builds in parallel, timing windows exclusive: file locks shared by every variant process of a node.

A variant holds the node's *room* shared while it builds and checks (export, quantize, compile, engine build,
accuracy). A CPU timing window takes the room exclusively: it waits for the builds in progress to finish their
step, and while it waits or times, no new build enters (a turnstile in front of the room gives the timing window
precedence, so a stream of builds cannot starve it). A GPU timing window keeps its shared hold on the room (no
CPU window runs beside it) and takes its GPU's lock exclusively: builds go on, and no other timing window uses
that GPU. Locks are ``flock``s: a process that dies releases them, so a crash never wedges the sweep.

On a node with CPUs to spare (more than 4), a GPU timing window also gets a core of its own: builds run on the
other cores (their affinity is set when they enter the room), and the timing thread moves to the last core (for
GPU N, the N-th from the end) for its window, so a launch-bound batch-1 window does not share its core with a
build. With one variant at a time (the default) every lock is free the moment it is asked for.
"""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import optbench.clock as clock

ENV = "OPTBENCH_LOCK_DIR"


def lock_dir() -> Path:
    """Per node and per user: a folder in the node's temp dir (``OPTBENCH_LOCK_DIR`` overrides it)."""
    d = Path(os.environ.get(ENV) or Path(tempfile.gettempdir()) / f"optbench-locks-{os.getuid()}")
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


class Exclusive:
    def __init__(self, root: Path | None = None, label: str = "", wait_file: Path | None = None) -> None:
        self.root = root or lock_dir()
        self.room = open(self.root / "room.lock", "a+")  # noqa: SIM115 (held for the process's lifetime)
        self.waited_s = 0.0
        self.building = False
        self.timing_core: int | None = None
        self.overlaps: list[dict] = []  # windows on other GPUs that overlapped this process's last GPU window
        self.label = label  # who this process is, for those who wait on it (run and variant)
        self.wait_file = wait_file  # where a wait is announced while it lasts (the sweep shows it)
        self._holding = self.root / f"holder-{os.getpid()}"

    def _lock(self, f, how: int) -> None:
        t0 = clock.monotonic()
        try:
            fcntl.flock(f, how | fcntl.LOCK_NB)
        except BlockingIOError:  # someone holds it: say who, wait, and clear the note
            self._announce(f"waiting for {'the timing window' if how == fcntl.LOCK_EX else 'a timing window to end'}"
                           f" ({Path(f.name).stem}): held by {', '.join(self.holders()) or 'another process'}"
                           "; no two timing windows of one account on this machine overlap")
            fcntl.flock(f, how)
            self._announce("")
        self.waited_s += clock.monotonic() - t0
        note = self._holding.with_name(f".{self._holding.name}")  # written whole, then renamed: never read half-made
        note.write_text(f"{self.label or 'an optbench worker'} (pid {os.getpid()})")
        note.replace(self._holding)

    def holders(self) -> list[str]:
        """The other live processes of this node's optbench runs that hold or wait on its locks."""
        out = []
        for path in sorted(self.root.glob("holder-*")):
            pid = path.name.split("-", 1)[1]
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                path.unlink(missing_ok=True)  # a process that died left it
                continue
            except PermissionError:
                pass
            try:
                text = path.read_text().strip()
            except OSError:
                continue
            if text:  # a note being written reads empty for an instant: it names no one yet
                out.append(text)
        return out

    def _ledger(self, entry: dict) -> None:
        """The node's GPU timing windows, one JSON line each as it opens and as it closes (appends of one short
        line are atomic), so a window can say which windows on other GPUs overlapped it."""
        line = json.dumps({**entry, "pid": os.getpid(), "label": self.label}) + "\n"
        path = self.root / "windows.jsonl"
        try:
            if path.exists() and path.stat().st_size > LEDGER_MAX_BYTES:  # keep the last part (recent windows)
                tail = path.read_bytes()[-LEDGER_MAX_BYTES // 2:]
                path.write_bytes(tail[tail.find(b"\n") + 1:])
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def windows_beside(self, gpu: int, start: float, end: float) -> list[dict]:
        """The timing windows of other processes, on other GPUs of this node, that overlapped [start, end]: those
        that closed inside it or after, and those still open when it closed."""
        try:
            lines = (self.root / "windows.jsonl").read_text(errors="replace").splitlines()
        except OSError:
            return []
        opened: dict[tuple, dict] = {}
        for line in lines:
            try:
                w = json.loads(line)
            except json.JSONDecodeError:
                continue
            if w.get("pid") == os.getpid() or w.get("gpu") == gpu:
                continue
            key = (w.get("pid"), w.get("start"))
            opened[key] = {**opened.get(key, {}), **w}
        out = []
        for w in opened.values():
            s, e = float(w["start"]), float(w.get("end", end))
            if s < end and e > start:
                out.append({"label": w.get("label"), "gpu": w.get("gpu"), "start": s, "end": e,
                            "overlap_s": round(min(e, end) - max(s, start), 4)})
        return sorted(out, key=lambda w: w["start"])

    def _announce(self, text: str) -> None:
        if self.wait_file is not None:
            try:
                self.wait_file.write_text(text)
            except OSError:
                pass

    def close(self) -> None:
        """Leave the room and every lock this object holds (a process that ends leaves them too): for a variant run
        inside a longer-lived process."""
        self.room.close()
        self.building = False
        self._holding.unlink(missing_ok=True)

    def build(self) -> None:
        """Enter the room shared (after the turnstile, so a waiting timing window goes first); once per process."""
        if self.building:
            return
        with open(self.root / "turnstile.lock", "a+") as gate:
            self._lock(gate, fcntl.LOCK_EX)
            self._lock(self.room, fcntl.LOCK_SH)
        self.building = True
        cores = reserved_cores()
        if cores:  # builds (and the threads they start) keep off the cores GPU timing windows use
            os.sched_setaffinity(0, set(os.sched_getaffinity(0)) - set(cores.values()))

    @contextmanager
    def timing(self, device: str):
        """The timing window: the whole node for a CPU variant, its GPU for a CUDA one."""
        if device.startswith("cuda"):
            from optbench.measure.gpu import gpu_index

            index = gpu_index(device)
            with open(self.root / f"gpu-{index}.lock", "a+") as gpu:
                self._lock(gpu, fcntl.LOCK_EX)
                core = reserved_cores().get(str(index))
                before = os.sched_getaffinity(0)
                if core is not None:
                    os.sched_setaffinity(0, {core})  # this (launching) thread alone on its core
                self.timing_core = core
                opened = clock.wall()
                self._ledger({"gpu": index, "start": opened})
                try:
                    yield
                finally:
                    closed = clock.wall()
                    self._ledger({"gpu": index, "start": opened, "end": closed})
                    self.overlaps = self.windows_beside(index, opened, closed)
                    if core is not None:
                        os.sched_setaffinity(0, before)
                    fcntl.flock(gpu, fcntl.LOCK_UN)
            return
        fcntl.flock(self.room, fcntl.LOCK_UN)
        self.building = False
        with open(self.root / "turnstile.lock", "a+") as gate:
            self._lock(gate, fcntl.LOCK_EX)
            self._lock(self.room, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self.room, fcntl.LOCK_UN)
        self._lock(self.room, fcntl.LOCK_SH)  # back to building-class work (closing, memory readings)
        self.building = True


class HeldByParent:
    """The node locks of a worker whose parent holds the node's timing window for it (the two processes of a
    paired re-timing, which take turns inside one window): it takes no lock and waits on none."""

    waited_s = 0.0
    timing_core: int | None = None

    def __init__(self, label: str = "") -> None:
        self.label, self.overlaps, self.building = label, [], False

    def build(self) -> None:
        pass

    @contextmanager
    def timing(self, device: str):
        yield

    def close(self) -> None:
        pass


LEDGER_MAX_BYTES = 1 << 20  # the node's window ledger is cut back to its recent half past this

SPARE_CPUS = 4  # with no more CPUs than this, no core is set aside (a 2-core VM times CPU variants alone anyway)


def reserved_cores() -> dict[str, int]:
    """GPU index -> the core its timing windows use, on nodes with CPUs to spare: GPU g gets the g-th core from the
    end. ``OPTBENCH_GPUS`` (set by the sweep: the node's GPUs its variants use) names the GPUs; none, no reserve."""
    gpus = [g.strip() for g in os.environ.get("OPTBENCH_GPUS", "").split(",") if g.strip().isdigit()]
    n = os.cpu_count() or 1
    if not gpus or n <= SPARE_CPUS:
        return {}
    return {g: n - 1 - int(g) for g in gpus if int(g) < n // 4}



