"""What a model source returns, and the registry of sources (by the spec's ``source`` tag)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCES: dict[str, Callable[..., LoadedModel]] = {}


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
        SOURCES[name] = fn
        return fn
    return wrap
