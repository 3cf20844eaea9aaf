"""Progress of a sweep on stderr: a rich bar on a terminal, one plain line per variant elsewhere (CI logs)."""

from __future__ import annotations

import sys

import optbench.clock as clock


class Progress:
    """Progress on stderr: a rich bar with the running variant's elapsed time and the sweep's ETA on a terminal,
    one plain line per variant (status, seconds, ETA) elsewhere (CI logs)."""

    def __init__(self, total: int, quiet: bool = False, pending: int | None = None) -> None:
        self.total, self.done, self.quiet = total, 0, quiet
        self.pending = total if pending is None else pending  # variants that will run (not skipped, not resumed)
        self.ran: list[float] = []
        self.skipped: list[str] = []  # reasons of the variants the plan skipped, said in one line
        self.starts: dict[str, float] = {}
        self.live = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self.live = RichProgress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("sweep"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
                                     console=Console(stderr=True), transient=True)
            self.task = self.live.add_task("", total=total, eta="")
            self.live.start()

    def eta(self) -> str:
        if not self.ran or self.pending <= 0:
            return ""
        left = sorted(self.ran)[len(self.ran) // 2] * self.pending  # median seconds per variant that ran
        return "ETA " + (f"{left / 60:.0f} min" if left >= 90 else f"{left:.0f} s")

    def show(self, vid: str) -> None:
        self.starts[vid] = clock.monotonic()
        if self.live is not None:
            self.live.update(self.task, description=vid, eta=self.eta())
        elif not self.quiet:
            sys.stderr.write(f"[{self.done + 1}/{self.total}] running {vid}\n")
            sys.stderr.flush()

    def note(self, vid: str, text: str) -> None:
        """What a running variant waits for (a node lock another run holds), or "" when the wait ends."""
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(self.task, description=f"{vid}: {text}" if text else vid)
        elif text:
            sys.stderr.write(f"[{self.done + 1}/{self.total}] {vid}: {text}\n")
            sys.stderr.flush()

    def skip(self, reason: str) -> None:
        """A variant the plan skipped: counted, said with the others in one line (:meth:`said_skipped`)."""
        self.done += 1
        self.skipped.append(reason)
        if self.live is not None:
            self.live.update(self.task, completed=self.done)

    def said_skipped(self) -> None:
        """One line for every variant the plan skipped, by reason, instead of a line each."""
        skipped, self.skipped = self.skipped, []
        if not skipped or self.quiet:
            return
        from collections import Counter

        reasons = Counter(str(r) for r in skipped).most_common()
        line = f"{len(skipped)} of {self.total} variants skipped: " + \
            "; ".join(f"{n} x {why[:90]}" for why, n in reasons[:3]) + \
            (f"; {len(reasons) - 3} other reason(s)" if len(reasons) > 3 else "") + " (`optbench plan` lists them)"
        if self.live is not None:
            self.live.console.print(line, highlight=False, markup=False)
        else:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def step(self, vid: str, status: str, ran: bool = False) -> None:
        self.done += 1
        took = clock.monotonic() - self.starts.pop(vid, clock.monotonic())
        if ran:
            self.ran.append(took)
            self.pending -= 1
        line = f"[{self.done}/{self.total}] {vid}: {status}" + (f" ({took:.1f} s" + (f"; {self.eta()}" if self.eta() else "")
                                                              + ")" if ran else "")
        if self.live is not None:
            self.live.console.print(line, highlight=False, markup=False)
            self.live.update(self.task, completed=self.done, eta=self.eta())
        elif not self.quiet:
            sys.stderr.write(line + "\n")
            sys.stderr.flush()

    def finish(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
