"""Model sources: each turns a model spec into a ``torch.nn.Module`` in eval mode (or an ONNX file).

Sources register themselves by the spec's ``source`` tag; adding one is one function here.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optbench.errors import SpecError

_SOURCES: dict[str, Callable[..., LoadedModel]] = {}


@dataclass
class LoadedModel:
    """A model ready for transforms and export; ``module`` is None for ONNX-only models."""

    module: Any | None
    onnx_path: Path | None = None
    tokenizer: Any | None = None
    output_names: list[str] = field(default_factory=lambda: ["output"])
    identity: str = ""


def model_source(name: str):
    def wrap(fn):
        _SOURCES[name] = fn
        return fn
    return wrap


def load_model(model_spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    """Build the model of ``model_spec``; ``train`` (Items) goes to python entrypoints that ask for it."""
    from optbench.models import sources  # noqa: F401

    return _SOURCES[model_spec.source](model_spec, spec_dir, train=train, seed=seed)


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def import_entrypoint(entrypoint: str, spec_dir: Path, field: str = "model.entrypoint") -> Callable:
    """Import ``file.py:function`` or ``module:function`` (the only way a spec runs Python code)."""
    from optbench.spec.load import resolve_path

    target, func = entrypoint.split(":")
    if target.endswith(".py") or "/" in target:
        path = resolve_path(target, spec_dir / "spec.yaml").resolve()
        # named by the file's content, not its path: pickled modules in a shared artifact cache refer to their
        # classes by this name, and the same file in another checkout must find them
        name = "optbench_user_" + file_digest(path)[:10] if path.is_file() else \
            "optbench_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[name]
                raise SpecError(f"importing the entrypoint raised {e.__class__.__name__}: {e}",
                                field=field, found=repr(entrypoint)) from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise SpecError(f"cannot import entrypoint module: {e}", field=field) from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise SpecError("entrypoint is not a callable", field=field, found=repr(entrypoint))
    return fn


def call_entrypoint(fn: Callable, kwargs: dict, train, seed: int) -> Any:
    params = inspect.signature(fn).parameters
    extra = {k: v for k, v in (("train", train), ("seed", seed)) if k in params and k not in kwargs}
    return fn(**kwargs, **extra)
