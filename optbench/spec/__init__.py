"""The experiment spec: models, loading, validation. Names load on first use (the command line's parser and
``optbench.spec.defaults`` need no pydantic)."""

from __future__ import annotations

from typing import Any

_WHERE = {"load_spec": "optbench.spec.load", "BackendSpec": "optbench.spec.models", "InputSpec": "optbench.spec.models",
          "MeasureSettings": "optbench.spec.models", "Spec": "optbench.spec.models"}
__all__ = list(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'optbench.spec' has no attribute '{name}'")
