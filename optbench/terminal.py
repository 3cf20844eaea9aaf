"""What optbench writes to a terminal: text with the control characters a name read from a file may carry (an ANSI
or OSC escape sequence in a node name, a variant id, a spec or CPU name, that would set the window's title, clear
the screen or move the cursor) shown as their escapes (``\\x1b[2J``), never sent raw."""

from __future__ import annotations

import re
import sys
from contextlib import contextmanager
from typing import Any

# escape sequences (CSI, OSC, two-character ones), then any single C0/C1 control but tab and newline, and the
# bidirectional overrides that reorder what a line shows
_CONTROL = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|"
                      r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def plain(text: str) -> str:
    """``text`` with every control sequence written out as its escape (``\\x1b]0;title\\x07``)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class PlainStream:
    """A text stream that writes :func:`plain` text (everything else as the stream it wraps)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(plain(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def plain_output():
    """stdout and stderr write :func:`plain` text while the block runs (a command of the CLI)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = PlainStream(saved[0]), PlainStream(saved[1])
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
