"""Torch-side variant generators (prune, distill), registered by the spec key that selects them.

``apply_transform(module, spec, ctx)`` returns a new module and a dict of facts for the
row (params, sparsity, accuracy after fine-tune, ...). Adding a transform is one module
with one ``@transform("key")`` function.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

_TRANSFORMS: dict[str, Callable[..., tuple[Any, dict]]] = {}


def transform(key: str):
    def wrap(fn):
        _TRANSFORMS[key] = fn
        return fn
    return wrap


def apply_transform(module: Any, tspec: Any, ctx: Any) -> tuple[Any, dict]:
    import optbench.transforms as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(f"optbench.transforms.{info.name}")
    for key, fn in _TRANSFORMS.items():
        settings = getattr(tspec, key, None)
        if settings is not None:
            return fn(module, settings, ctx)
    raise ValueError(f"transform '{tspec.name}' names no registered transform ({sorted(_TRANSFORMS)})")


def count_params(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))
