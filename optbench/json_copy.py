"""Deep copies of JSON-like values (what a result row's columns hold), fast where they are long lists of numbers:
``dataclasses.asdict`` deep-copies element by element, seconds for a row with a million latency samples."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any


def deep_copy(value: Any) -> Any:
    """A deep copy of ``value``; a list of plain numbers is copied in one step."""
    if isinstance(value, list):
        if all(type(v) in (float, int) for v in value):
            return list(value)
        return [deep_copy(v) for v in value]
    if isinstance(value, dict):
        return {k: deep_copy(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    return copy.deepcopy(value)


def plain_fields(obj: Any) -> dict[str, Any]:
    """A flat dataclass's or pydantic model's fields as a dict of deep copies (``dataclasses.asdict``, faster)."""
    names = type(obj).model_fields if hasattr(type(obj), "model_fields") else [f.name for f in dataclasses.fields(obj)]
    return {name: deep_copy(getattr(obj, name)) for name in names}
