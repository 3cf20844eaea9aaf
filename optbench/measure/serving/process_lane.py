"""An execution lane in a process of its own (``serving.lane_processes``): the lane's session is built again from
the run's files in a fresh interpreter, which runs it; the serving process keeps a proxy that hands each batch's
pool indices over a socket and waits for the outputs.

Why: lanes on threads share one interpreter, and an eager model launches its kernels from Python. Two threads
that each spend most of a call in Python take turns on the GIL, so a second lane buys little (ResNet-50 eager,
unbatched on one H100: 1.13x). Two processes do not share it, as Triton's Python backend runs each model instance
in a stub process of its own. The price: each lane builds its own session (its own CUDA context and weights), and a
batch's indices and outputs cross a socket (pickled; outputs, not inputs, since each lane stages the pool itself).

The process is started with ``subprocess`` (the serving worker is a daemonic process and may not use
``multiprocessing`` for children), in the worker's process group, so a worker that is killed takes its lanes
with it; a lane that is left without its worker ends when its socket closes. What the child runs is
``LaneSource.module``'s ``main``: the run package provides it, so this module knows nothing of runs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from optbench.backends.base import Lane

START_TIMEOUT_S = 600.0  # a lane's process builds its session (imports, weights, a compile) within this
_LIVE: set[int] = set()  # pids of this process's lane processes, while they serve


def live_pids() -> set[int]:
    """The lane processes this process has running: their memory is the served engine's too."""
    return set(_LIVE)


@dataclass(frozen=True)
class LaneSource:
    """How another process opens the session a lane runs: ``module`` (its ``main(fd)`` serves one lane over the
    socket ``fd``) and ``job``, what that ``main`` reads first (the run's files and the variant; the lane adds how
    many serving samples to stage and whether to capture CUDA graphs)."""

    module: str
    job: dict[str, Any] = field(default_factory=dict)


class ProcessLane(Lane):
    """The serving process's side of a lane in a process of its own: ``run`` sends the indices, waits (the GIL
    released) and returns what the lane's process answered; its error is raised here with its own words."""

    own_process = True

    def __init__(self, source: LaneSource, lane_no: int, samples: int, cuda_graphs: bool = False) -> None:
        import optbench

        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(optbench.__file__).resolve().parents[1])  # the package as this process imported it
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        code = f"import sys; from {source.module} import main; sys.exit(main(int(sys.argv[1])))"
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(theirs.fileno())], pass_fds=(theirs.fileno(),),
                                     env=env, stdin=subprocess.DEVNULL)
        theirs.close()
        _LIVE.add(self.proc.pid)
        self.conn = Connection(ours.detach())
        self._compiles: int | None = None
        self._describe: dict[str, Any] = {}
        try:
            self.conn.send({**source.job, "lane": lane_no, "samples": int(samples), "cuda_graphs": bool(cuda_graphs)})
            if not self.conn.poll(START_TIMEOUT_S):
                raise RuntimeError(f"lane {lane_no}'s process built no session in {START_TIMEOUT_S:.0f} s")
            self._describe = self._answer()
        except BaseException:
            self.close()
            raise

    def _answer(self) -> Any:
        try:
            status, payload, self._compiles = self.conn.recv()
        except (EOFError, OSError) as e:
            code = self.proc.poll()
            raise RuntimeError(f"the lane's process (pid {self.proc.pid}) ended"
                               f"{f' with exit code {code}' if code is not None else ''} before it answered") from e
        if status != "ok":
            raise RuntimeError(f"in the lane's process (pid {self.proc.pid}): {payload}")
        return payload

    def run(self, index: np.ndarray) -> dict[str, np.ndarray]:
        self.conn.send(np.ascontiguousarray(index, dtype=np.int64))
        return self._answer()

    def describe(self) -> dict[str, Any]:
        return {**self._describe, "process": f"a process of its own per lane (this one: pid {self.proc.pid}); "
                                             f"indices and outputs cross a socket"}

    def compiles(self) -> int | None:
        """The lane's process's compile count after its last call (it reports it with each answer)."""
        return self._compiles

    def close(self) -> None:
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        _LIVE.discard(self.proc.pid)
        self.conn.close()


def serve_lane(fd: int, open_lane: Any) -> int:
    """The lane process's loop: read the job from the socket ``fd``, ``open_lane(job)`` → (lane, close), answer
    ("ok", the lane's description, compiles) once ready, then ("ok", outputs, compiles) per index array until the
    serving process sends None or goes away; an error is answered as ("error", words, compiles) and the loop goes
    on (the batcher gives it to that batch's requests)."""
    conn = Connection(fd)
    job = conn.recv()
    try:
        lane, close = open_lane(job)
    except BaseException as e:
        conn.send(("error", f"the lane's session could not be opened: {type(e).__name__}: {e}", None))
        return 1
    try:
        conn.send(("ok", lane.describe(), lane.compiles()))
        while True:
            try:
                index = conn.recv()
            except (EOFError, OSError):
                return 0
            if index is None:
                return 0
            try:
                out = lane.run(index)
                conn.send(("ok", {k: np.asarray(v) for k, v in out.items()}, lane.compiles()))
            except Exception as e:
                conn.send(("error", f"{type(e).__name__}: {e}", lane.compiles()))
    finally:
        lane.close()
        close()
