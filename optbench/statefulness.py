"""Whether the reference repeats itself: the same items run twice in a row must give the same outputs.

Every verdict compares a variant with the reference item by item, so the reference must be a function of its
inputs. A module that keeps state between calls (streaming VAD and ASR modules: a buffer each forward updates)
answers each batch from the state the batches before it left; a variant at another batch size then meets other
states than the reference did, and its rows show drift that no precision caused. A reference that is not
deterministic (dropout left on, a random op) does the same. Where the model is read (see
:mod:`optbench.interpret`), its last reading call is run again on the same items: outputs that differ beyond
TOLERANCE (relative L2; CPU references in fp32 repeat to the bit) stop the run before any variant, naming what
settles it: ``model.reset`` (torch modules), the state declared as inputs and outputs (model files carry it
explicitly, as the corpus's streaming VAD models do), or ``stateful: accept`` (judged as is, every row warns).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from optbench.errors import SpecError

TOLERANCE = 1e-6  # relative L2 between two runs of the reference on the same items


@dataclass(frozen=True)
class Repeat:
    """The reference run twice on the same ``batch`` items: each output's relative L2 between the two answers."""

    batch: int
    rel_l2: dict[str, float]
    reset: str | None = None      # the spec's model.reset, run before every call
    accepted: bool = False        # stateful: accept

    @property
    def differs(self) -> bool:
        return any(not v <= TOLERANCE for v in self.rel_l2.values())  # NaN differs too

    def worst(self) -> tuple[str, float]:
        name = max(self.rel_l2, key=lambda k: np.inf if np.isnan(self.rel_l2[k]) else self.rel_l2[k])
        return name, self.rel_l2[name]

    def seen(self) -> str:
        if not self.differs:
            return f"the same {self.batch} item(s) run twice in a row agree (rel. L2 at most " \
                   f"{max(self.rel_l2.values(), default=0.0):.2g})"
        name, value = self.worst()
        return f"the same {self.batch} item(s) run twice in a row give other outputs (rel. L2 {value:.3g} on " \
               f"'{name}', {TOLERANCE:g} allowed)"

    def line(self) -> str:
        """The interpretation table's line."""
        after = f", model.reset: {self.reset} running before every call" if self.reset else ""
        if not self.differs:
            return f"repeat: {self.seen()}{after}"
        return f"repeat: {self.seen()}{after}: state kept between calls, or not deterministic; {self.warning()}"

    def warning(self) -> str | None:
        """Every row's warning where the model is judged as it is (stateful: accept)."""
        if not (self.differs and self.accepted):
            return None
        name, value = self.worst()
        return (f"stateful: accept: the reference answers the same items differently when run twice (rel. L2 "
                f"{value:.3g} on '{name}'); drift includes the state carried between calls")

    def to_json(self) -> dict:
        return asdict(self)


def rel_l2(a: Any, b: Any) -> float:
    """Relative L2 of ``a`` against ``b`` (float64); NaNs in the same places agree, elsewhere they are inf."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return float("inf")
    a, b = np.where(nan_a, 0.0, a), np.where(nan_b, 0.0, b)
    diff = float(np.linalg.norm(a - b))
    if diff == 0.0:
        return 0.0
    norm = float(np.linalg.norm(b))
    return diff / norm if norm > 0 else float("inf")


def repeat_of(spec: Any, batch: int, first: dict[str, Any], again: dict[str, Any]) -> Repeat:
    """The reading of two answers to the same items; outputs are paired by name."""
    rel = {name: rel_l2(again[name], out) if name in again else float("inf") for name, out in first.items()}
    return Repeat(batch, rel, getattr(getattr(spec, "model", None), "reset", None),
                  getattr(spec, "stateful", "check") == "accept")


def check(spec: Any, repeat: Repeat, methods: list[str] | None = None) -> None:
    """SpecError where the reference does not repeat itself and the spec does not accept it; ``methods``: the
    torch module's methods that look like a reset (named in the message), None for model files."""
    if not repeat.differs or repeat.accepted:
        return
    accept = "stateful: accept (judge it as it is; every row warns)"
    module = getattr(getattr(getattr(spec, "model", None), "kind", None), "module", None) is not None
    if repeat.reset:
        raise SpecError(f"{repeat.seen()}, with model.reset: {repeat.reset} run before every call: the model is not "
                        f"deterministic (dropout left on, a random op?)", field="stateful",
                        expected=f"a reset that restores every state the module keeps, or {accept}",
                        found=repr(repeat.reset))
    if module:
        named = methods[0] if methods else "reset_states"
        has = f"; the module has {', '.join(methods)}" if methods else \
            "; or 'file.py:function', called with the module"
        raise SpecError(f"{repeat.seen()}: the module keeps state between calls, or is not deterministic, and its "
                        f"drift would read as precision drift", field="model.reset",
                        expected=f"model.reset: {named} (a method run before every call of the reference and the "
                                 f"torch sessions{has}), or {accept}")
    raise SpecError(f"{repeat.seen()}: the model keeps state between calls, or is not deterministic, and its drift "
                    f"would read as precision drift", field="stateful",
                    expected="the state declared as inputs and outputs, fed by the data (a streaming model's caches: "
                             f"inputs: - {{name: cache, shape: [batch, ...]}} and its output judged), or {accept}",
                    found="the state kept inside the model")
