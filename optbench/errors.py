"""The one user-facing error type.

Every mistake a user can make (a malformed spec, a missing file, a run directory that
would be overwritten) ends in an :class:`OptbenchError`; the CLI prints its one-line
message and exits with :attr:`OptbenchError.exit_code`, never with a traceback.
"""

from __future__ import annotations


class OptbenchError(Exception):
    """A user-facing error: one clear line, a process exit code."""

    exit_code = 2

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None, expected: str | None = None,
                 found: str | None = None) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.expected = expected
        self.found = found
        super().__init__(self.format())

    def format(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "")
        parts = [p for p in (where, f"field '{self.field}'" if self.field else "") if p]
        head = ": ".join(parts)
        text = self.message
        if self.expected is not None:
            text += f"; expected {self.expected}"
        if self.found is not None:
            text += f", found {self.found}"
        return f"{head}: {text}" if head else text


class SpecError(OptbenchError):
    """The spec (or a file it names) is malformed."""


class RunDirError(OptbenchError):
    """A run directory cannot be used as asked (exists, missing, inconsistent)."""


class Interrupted(OptbenchError):
    """Ctrl-C: the shell's code for SIGINT, not a usage error's."""

    exit_code = 130


def strict_float(text: str) -> float:
    """A number as a user writes one on a command line: ``5``, ``0.05``, ``1e-3``; Python's ``float`` also takes
    ``1_0`` (ten) and surrounding spaces, which here are mistakes (ValueError)."""
    import re

    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(inf|nan)", text.strip(), re.IGNORECASE) \
            or "_" in text:
        raise ValueError(f"not a number: {text!r}")
    return float(text)
