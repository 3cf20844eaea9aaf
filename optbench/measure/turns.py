"""Two worker processes that take turns timing: round by round, in an order both know (paired re-timing).

A paired re-timing (:mod:`optbench.run.retime`) starts one fresh process of each side at once. Both build, then
wait for each other; their timing rounds then alternate in the order the re-timing drew (ABBA blocks of rounds,
:func:`optbench.measure.paired.schedule`), one process timing while the other waits, blocked, using no CPU. A slow
period of the machine (a neighbour, a hypervisor; seconds long, invisible from inside the guest) then falls on
both sides' rounds alike instead of on one side's whole process. When the last round is done both go on together.

The hand-over is a byte through a named pipe (FIFO) per side, in a folder the re-timing made for the pair
(:func:`make_folder`): no polling while a round runs. A side that waits checks once a second whether the re-timing
marked the pair aborted (the other process failed), and then stops with that reason instead of waiting forever.
"""

from __future__ import annotations

import os
import select
from collections.abc import Sequence
from pathlib import Path

SIDES = ("baseline", "candidate")
ABORT = "abort"           # the file the re-timing writes into the pair's folder when one process failed
WAIT_CHECK_S = 1.0        # how often a waiting side looks for ABORT


def make_folder(folder: Path) -> Path:
    """A pair's folder: one FIFO per side."""
    folder.mkdir(parents=True, exist_ok=True)
    for side in SIDES:
        os.mkfifo(folder / f"{side}.fifo", 0o600)
    return folder


def abort(folder: Path, why: str) -> None:
    """Mark the pair aborted: a side waiting for its turn stops with ``why``."""
    (folder / ABORT).write_text(why)


class Turns:
    """One side's view of the pair's order: ``start()`` once both are ready, ``before()`` / ``after()`` around each
    of its rounds, ``end()`` after its last. ``order`` names the side of every round, in time order."""

    def __init__(self, folder: str | Path, me: str, order: Sequence[str], core: int | None = None) -> None:
        if me not in SIDES or set(order) - set(SIDES):
            raise ValueError(f"a side is one of {SIDES}, not {me!r} / {sorted(set(order) - set(SIDES))}")
        self.folder, self.me, self.order, self.core = Path(folder), me, list(order), core
        other = SIDES[1 - SIDES.index(me)]
        # read-write opens of a FIFO never block (Linux): each side holds both ends of its own and the other's
        self._mine = os.open(self.folder / f"{me}.fifo", os.O_RDWR)
        self._theirs = os.open(self.folder / f"{other}.fifo", os.O_RDWR)
        self._at = -1  # the position in ``order`` of this side's last round

    @property
    def rounds(self) -> int:
        """How many rounds are this side's."""
        return self.order.count(self.me)

    def _send(self) -> None:
        os.write(self._theirs, b".")

    def _receive(self) -> None:
        while True:
            ready, _, _ = select.select([self._mine], [], [], WAIT_CHECK_S)
            if ready:
                os.read(self._mine, 1)
                return
            if (self.folder / ABORT).exists():
                raise RuntimeError(f"the other side's re-timing process stopped: "
                                   f"{(self.folder / ABORT).read_text(errors='replace')[:300]}")

    def start(self) -> None:
        """Both sides built and ready: neither times while the other still builds. With ``core``, this process is
        moved onto that core first (both sides of a pair on one core: they never run at once, and a core slower
        than the other, a busy sibling hyperthread on the host, then slows both sides alike)."""
        if self.core is not None:  # every thread of the process (a runtime's pool was started at build)
            for tid in os.listdir("/proc/self/task"):
                try:
                    os.sched_setaffinity(int(tid), {self.core})
                except OSError:
                    pass  # a thread that ended meanwhile
        self._send()
        self._receive()

    def before(self) -> None:
        """Wait until this side's next round is due (the other side's rounds before it are done)."""
        nxt = self.order.index(self.me, self._at + 1)
        if any(side != self.me for side in self.order[self._at + 1:nxt]):
            self._receive()
        self._at = nxt

    def after(self) -> None:
        """A round is done: hand over if the next round is the other side's."""
        if self._at + 1 < len(self.order) and self.order[self._at + 1] != self.me:
            self._send()

    def end(self) -> None:
        """After this side's last round: wait until the other side's rounds are done too."""
        self._send()
        self._receive()

    def close(self) -> None:
        for fd in (self._mine, self._theirs):
            try:
                os.close(fd)
            except OSError:
                pass
