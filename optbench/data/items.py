"""Input data items, their splits, how they are fed to the model, and the registry of data sources.

A source returns every item it has (arrays keyed by input name, labels if known);
:func:`load_splits` shuffles them with the spec's seed and cuts the splits, so the
calibration items used for int8 are never the items drift is measured on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optbench.errors import SpecError
from optbench.spec.models import InputSpec, Spec

SOURCES: dict[str, Callable[..., Items]] = {}


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
    fit: str = "crop"                       # how data meets a shape point it does not match (spec data.fit)
    fitted: dict[str, str] | None = None    # input -> how its data was fitted to this point ("cropped 224 -> 200")

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values()))) if self.inputs else 0

    def digest(self, n: int | None = None, with_labels: bool = False) -> str:
        """sha256 (hex) of the first ``n`` items' arrays (every item by default), by input name, dtype and shape;
        with ``with_labels``, of the labels too: for cache keys and identities of what the items feed."""
        import hashlib

        h = hashlib.sha256()
        for name in sorted(self.inputs):
            arr = np.ascontiguousarray(self.inputs[name][:n])
            h.update(f"{name}{arr.dtype}{arr.shape}".encode())
            h.update(arr.tobytes())
        if with_labels and self.labels is not None:
            h.update(np.ascontiguousarray(self.labels).tobytes())
        return h.hexdigest()

    def take(self, index: np.ndarray) -> Items:
        labels = None if self.labels is None else self.labels[index]
        return Items({k: v[index] for k, v in self.inputs.items()}, labels, self.feed, self.fit)

    def batches(self, size: int):
        """Yield (feeds, n_real) with every batch exactly ``size`` items (the last one padded by repetition)."""
        n = len(self)
        for start in range(0, n, size):
            idx = np.arange(start, start + size) % n if n >= size else np.arange(size) % n
            real = min(size, n - start)
            yield self.layout(idx), real

    def layout(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """The items ``idx`` as model inputs, in call order: batch axis moved in place, constants added. Arrays are
        C-contiguous whatever the data source returned (a transposed view keeps its memory order through indexing):
        the variants read the items back from data.npz, C-contiguous, and a torch module fed a view gets a strided
        (channels-last) tensor whose convolutions run other kernels, a difference the reference must not have."""
        if self.feed is None:
            return {k: np.ascontiguousarray(v[idx]) for k, v in self.inputs.items()}
        out = {}
        for f in self.feed:
            if f.const is not None:
                out[f.name] = f.const
            elif f.batch_axis is None:  # an input without a batch dim: one item's array (batch size 1); a scalar
                out[f.name] = np.asarray(self.inputs[f.name][idx[0]])  # input stays a 0-d array, not a numpy scalar
            else:
                out[f.name] = np.ascontiguousarray(np.moveaxis(self.inputs[f.name][idx], 0, f.batch_axis))
        return out

    def at_shape(self, inputs: list[InputSpec], dims: dict[str, int]) -> Items:
        """The items at a shape point: each symbolic dim other than batch made ``dims[d]`` long by the data's fit
        policy (crop: the first elements; pad: zeros after them; resize: linear resampling). A point longer than
        the data is an error unless the policy pads or resizes."""
        out, fitted = {}, {}
        for spec in inputs:
            if spec.name not in self.inputs:
                continue
            arr = self.inputs[spec.name]
            notes = []
            for axis, d in enumerate(spec.item_shape, start=1):
                if isinstance(d, str) and d in dims and arr.shape[axis] != dims[d]:
                    have = arr.shape[axis]
                    arr, how = fit_axis(arr, axis, dims[d], self.fit, f"input '{spec.name}' dim '{d}'")
                    notes.append(f"{d}: {how} {have} -> {dims[d]}")
            out[spec.name] = arr
            if notes:
                fitted[spec.name] = ", ".join(notes)
        return Items(out, self.labels, self.feed, self.fit, fitted)


def fit_axis(arr: np.ndarray, axis: int, want: int, policy: str, what: str) -> tuple[np.ndarray, str]:
    """``arr`` made ``want`` long along ``axis``; returns it and what was done (cropped, padded, resized)."""
    have = arr.shape[axis]
    if policy == "resize":
        if not np.issubdtype(arr.dtype, np.floating):
            raise SpecError(f"{what}: data.fit 'resize' resamples float data, this input is {arr.dtype}",
                            field="data.fit", expected="pad or crop for integer data", found="resize")
        from scipy.ndimage import zoom

        factors = [1.0] * arr.ndim
        factors[axis] = want / have
        out = zoom(arr, factors, order=1, grid_mode=True, mode="nearest").astype(arr.dtype)
        return out, "resized"
    if want < have:
        index = [slice(None)] * arr.ndim
        index[axis] = slice(0, want)
        return arr[tuple(index)], "cropped"
    if policy == "pad":
        pad = [(0, 0)] * arr.ndim
        pad[axis] = (0, want - have)
        return np.pad(arr, pad), "padded"
    raise SpecError(f"{what}: the shape point asks for {want} but the data holds {have}", field="variants.shapes",
                    expected=f"a point of at most {have}, or data.fit: pad | resize", found=str(want))


@dataclass
class Splits:
    train: Items
    calibration: Items
    eval: Items


def source(name: str):
    """Register a data source: ``fn(spec, spec_dir, count) -> Items``."""
    def wrap(fn):
        SOURCES[name] = fn
        return fn
    return wrap


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
