"""Input data: sources registered by name, split into disjoint, seeded train/calibration/eval sets.

A source returns every item it has (arrays keyed by input name, labels if known);
:func:`load_splits` shuffles them with the spec's seed and cuts the splits, so the
calibration items used for int8 are never the items drift is measured on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optbench.errors import SpecError
from optbench.spec.models import InputSpec, Spec

_SOURCES: dict[str, Callable[..., Items]] = {}


@dataclass
class Items:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def take(self, index: np.ndarray) -> Items:
        labels = None if self.labels is None else self.labels[index]
        return Items({k: v[index] for k, v in self.inputs.items()}, labels)

    def batches(self, size: int):
        """Yield (feeds, n_real) with every batch exactly ``size`` items (the last one padded by repetition)."""
        n = len(self)
        for start in range(0, n, size):
            idx = np.arange(start, start + size) % n if n >= size else np.arange(size) % n
            real = min(size, n - start)
            yield {k: v[idx] for k, v in self.inputs.items()}, real

    def at_shape(self, inputs: list[InputSpec], dims: dict[str, int]) -> Items:
        """Slice symbolic dims other than batch to the values in ``dims``."""
        out = {}
        for spec in inputs:
            arr = self.inputs[spec.name]
            index = [slice(None)]
            for d in spec.shape[1:]:
                index.append(slice(0, dims[d]) if isinstance(d, str) and d in dims else slice(None))
            out[spec.name] = arr[tuple(index)]
        return Items(out, self.labels)


@dataclass
class Splits:
    train: Items
    calibration: Items
    eval: Items


def source(name: str):
    """Register a data source: ``fn(spec, spec_dir, count) -> Items``."""
    def wrap(fn):
        _SOURCES[name] = fn
        return fn
    return wrap


def load_splits(spec: Spec, spec_dir: Path, tokenizer=None) -> Splits:
    from optbench.data import sources  # noqa: F401  (registers the built-in sources)

    d = spec.data
    need = d.eval + d.calibration + (d.train or 0)
    items = _SOURCES[d.source](spec, spec_dir, need, tokenizer=tokenizer)
    _check_inputs(items, spec)
    items.inputs = {i.name: items.inputs[i.name] for i in spec.inputs}  # call order; extra arrays dropped
    n = len(items)
    if n < d.eval + d.calibration + (d.train or 0):
        raise SpecError(f"data source '{d.source}' has {n} items, fewer than eval+calibration+train", field="data",
                        expected=f"at most {n} items in all", found=str(d.eval + d.calibration + (d.train or 0)))
    order = np.random.default_rng(spec.seed).permutation(n)
    ev, cal = order[: d.eval], order[d.eval : d.eval + d.calibration]
    rest = order[d.eval + d.calibration :]
    train = rest if d.train is None else rest[: d.train]
    return Splits(items.take(train), items.take(cal), items.take(ev))


def _shape(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _check_inputs(items: Items, spec: Spec) -> None:
    for inp in spec.inputs:
        if inp.name not in items.inputs:
            raise SpecError(f"data has no array for input '{inp.name}'", field="inputs",
                            expected=f"one of {sorted(items.inputs)}", found=repr(inp.name))
        arr = items.inputs[inp.name]
        if arr.ndim != len(inp.shape):
            raise SpecError(f"input '{inp.name}' has rank {len(inp.shape)} but the data's is {arr.ndim}",
                            field="inputs", expected=_shape(inp.shape), found=_shape(["N", *arr.shape[1:]]))
        for axis, dim in enumerate(inp.shape[1:], start=1):
            if isinstance(dim, int) and arr.shape[axis] != dim:
                raise SpecError(f"input '{inp.name}' shape does not match the data", field="inputs",
                                expected=_shape(inp.shape), found=_shape(["N", *arr.shape[1:]]))
        if str(arr.dtype) != inp.dtype:
            raise SpecError(f"input '{inp.name}' dtype does not match the data", field="inputs",
                            expected=inp.dtype, found=str(arr.dtype))
