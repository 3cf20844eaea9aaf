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


@dataclass(frozen=True)
class Feed:
    """How one model input is fed: its batch axis in the model's layout, or a constant."""

    name: str
    batch_axis: int | None = 0
    const: np.ndarray | None = None


def feeds_of(inputs: list[InputSpec]) -> list[Feed]:
    out = []
    for i in inputs:
        const = None if i.value is None else np.asarray(i.value, dtype=i.dtype).reshape(
            [d if isinstance(d, int) else 1 for d in i.shape])
        out.append(Feed(i.name, i.batch_axis, const))
    return out


@dataclass
class Items:
    """Data item-major: ``inputs[name]`` is (N, *item shape); ``feed`` turns a batch into the model's layout."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    feed: list[Feed] | None = None

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values()))) if self.inputs else 0

    def take(self, index: np.ndarray) -> Items:
        labels = None if self.labels is None else self.labels[index]
        return Items({k: v[index] for k, v in self.inputs.items()}, labels, self.feed)

    def batches(self, size: int):
        """Yield (feeds, n_real) with every batch exactly ``size`` items (the last one padded by repetition)."""
        n = len(self)
        for start in range(0, n, size):
            idx = np.arange(start, start + size) % n if n >= size else np.arange(size) % n
            real = min(size, n - start)
            yield self.layout(idx), real

    def layout(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The items ``idx`` as model inputs, in call order: batch axis moved in place, constants added."""
        if self.feed is None:
            return {k: v[idx] for k, v in self.inputs.items()}
        out = {}
        for f in self.feed:
            if f.const is not None:
                out[f.name] = f.const
            elif f.batch_axis is None:  # an input without a batch dim: one item's array (batch size 1)
                out[f.name] = self.inputs[f.name][idx[0]]
            else:
                out[f.name] = np.moveaxis(self.inputs[f.name][idx], 0, f.batch_axis)
        return out

    def at_shape(self, inputs: list[InputSpec], dims: dict[str, int]) -> Items:
        """Slice symbolic dims other than batch to the values in ``dims``."""
        out = {}
        for spec in inputs:
            if spec.name not in self.inputs:
                continue
            index = [slice(None)]
            for d in spec.item_shape:
                index.append(slice(0, dims[d]) if isinstance(d, str) and d in dims else slice(None))
            out[spec.name] = self.inputs[spec.name][tuple(index)]
        return Items(out, self.labels, self.feed)


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
    items.inputs = {i.name: items.inputs[i.name] for i in spec.inputs if i.value is None}  # extra arrays dropped
    items.feed = feeds_of(spec.inputs)
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


def _expected(inp: InputSpec) -> str:
    """The spec's shape, and the item-major data layout where the two differ."""
    if inp.batch_axis == 0:
        return _shape(inp.shape)
    return f"{_shape(inp.shape)} in the model, data {_shape(['N', *inp.item_shape])} (items first)"


def _check_inputs(items: Items, spec: Spec) -> None:
    for inp in spec.inputs:
        if inp.value is not None:
            continue
        if inp.name not in items.inputs:
            raise SpecError(f"data has no array for input '{inp.name}'", field="inputs",
                            expected=f"one of {sorted(items.inputs)}", found=repr(inp.name))
        arr = items.inputs[inp.name]
        item = inp.item_shape
        if arr.ndim != len(item) + 1:
            raise SpecError(f"input '{inp.name}': items of shape {_shape(item)} need data of rank {len(item) + 1} "
                            f"(items first), but the data's is {arr.ndim}",
                            field="inputs", expected=_expected(inp), found=_shape(["N", *arr.shape[1:]]))
        for axis, dim in enumerate(item, start=1):
            if isinstance(dim, int) and arr.shape[axis] != dim:
                raise SpecError(f"input '{inp.name}' shape does not match the data", field="inputs",
                                expected=_expected(inp), found=_shape(["N", *arr.shape[1:]]))
        if str(arr.dtype) != inp.dtype:
            raise SpecError(f"input '{inp.name}' dtype does not match the data", field="inputs",
                            expected=inp.dtype, found=str(arr.dtype))
