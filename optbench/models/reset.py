"""A module's reset, run before every call (the spec's ``model.reset``).

Streaming modules (VAD, ASR) keep state between calls: a buffer each forward updates, a ``reset_states()`` that
clears it. Run as they are, the reference answers each batch from the state the batches before it left, and a
variant at another batch size is judged against other inputs than it was fed: drift that is no precision's.
With a reset every call starts from one state, so the reference and each torch session compute the same function.
The module is wrapped once where it is loaded, and everything that runs it (the reference, torch sessions,
transforms, ``explain``) runs the wrapper; the reset is part of each timed call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from optbench.errors import SpecError


class ResetBeforeCall(torch.nn.Module):
    """``module`` with ``reset`` (a method name, or 'file.py:function' called with the module) run before every
    call. Pickles without the resolved hook (it is resolved again from ``spec_dir`` where it is next called)."""

    def __init__(self, module: torch.nn.Module, reset: str, spec_dir: str) -> None:
        super().__init__()
        self.module = module
        self.reset = reset
        self.spec_dir = spec_dir
        self._resolved: Callable[[Any], Any] | None = None

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._resolved is None:
            self._resolved = resolve(self.module, self.reset, Path(self.spec_dir))
        self._resolved(self.module)
        return self.module(*args, **kwargs)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_resolved": None}


def resolve(module: Any, reset: str, spec_dir: Path) -> Callable[[Any], Any]:
    """The callable that resets ``module``: its method, or the hook the spec names; SpecError naming what the
    module has where the method is missing."""
    if ":" in reset:
        from optbench.paths import import_entrypoint

        return import_entrypoint(reset, spec_dir, field="model.reset")
    if not callable(getattr(module, reset, None)):
        found = reset_methods(module)
        raise SpecError(f"the module has no method '{reset}'", field="model.reset",
                        expected="a method of the module" + (f" (it has {', '.join(found)})" if found else
                                                             ", or 'file.py:function' called with the module"),
                        found=repr(reset))
    return lambda m: getattr(m, reset)()


def reset_methods(module: Any) -> list[str]:
    """The module's methods whose name says they reset something (``reset_states``, ``reset``), for the message
    that asks for ``model.reset``; TorchScript modules list the methods they export."""
    names = set(dir(module))
    script = getattr(module, "_c", None)
    if script is not None and hasattr(script, "_method_names"):
        names |= set(script._method_names())
    return sorted(n for n in names if "reset" in n.lower() and not n.startswith("_")
                  and n not in ("reset_parameters",) and callable(getattr(module, n, None)))


def with_reset(module: Any, model_spec: Any, spec_dir: Path) -> Any:
    """``module`` wrapped to reset before every call where the spec names a reset; as it is otherwise (and where
    it is wrapped already: a transformed module pickled with its wrapper)."""
    reset = getattr(model_spec, "reset", None)
    if reset is None or module is None or isinstance(module, ResetBeforeCall):
        return module
    resolve(module, reset, Path(spec_dir))  # a missing method is a spec error here, before anything runs
    return ResetBeforeCall(module, reset, str(spec_dir))
