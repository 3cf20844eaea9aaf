"""Built-in data sources: synthetic, digits, npz, text."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from optbench.data.items import Items, source
from optbench.errors import SpecError
from optbench.paths import resolve_path
from optbench.spec.models import Spec


def _max_dims(spec: Spec) -> dict[str, int]:
    dims: dict[str, int] = {}
    for shape in spec.variants.shapes or []:
        for k, v in shape.items():
            dims[k] = max(dims.get(k, 0), v)
    return dims


DATA_SHARE = 0.25  # synthetic data (and one batch of it) may take at most this share of the machine's memory


def _item_shape(inp, dims: dict[str, int], seq_len: int) -> list[int]:
    return [d if isinstance(d, int) else dims.get(d, seq_len) for d in inp.item_shape]


def check_data_size(spec: Spec, count: int) -> None:
    """Random items of the spec's inputs, and the largest batch of them, must fit in a share of the machine's
    memory: checked before any is made (an input of [batch, 100000, 100000] float32 is 37 GiB an item)."""
    from optbench.measure.memory import proc_kib_field

    dims = _max_dims(spec)
    sized = [(inp, _item_shape(inp, dims, spec.data.seq_len)) for inp in spec.inputs if inp.value is None]
    item = {inp.name: int(np.prod(shape, dtype=np.float64)) * np.dtype(inp.dtype).itemsize for inp, shape in sized}
    limit = int((proc_kib_field("/proc/meminfo", "MemTotal") or 1 << 62) * DATA_SHARE)
    need = max(count, max(spec.variants.batch_size)) * sum(item.values())
    if need > limit:
        name = max(item, key=item.get)
        shape = next(shape for inp, shape in sized if inp.name == name)
        raise SpecError(f"random data for {count:,} items needs {need / 2**30:,.1f} GiB (input '{name}' {shape} is "
                        f"{item[name] / 2**30:,.2f} GiB an item), more than a quarter of this machine's memory "
                        f"({limit / 2**30:,.1f} GiB)", field="inputs",
                        expected="smaller dims (variants.shapes, --shapes) or fewer items (data.eval, "
                                 "data.calibration)")


@source("synthetic")
def synthetic(spec: Spec, spec_dir: Path, count: int, tokenizer=None) -> Items:
    rng = np.random.default_rng(spec.seed)
    dims = _max_dims(spec)
    count = max(count, spec.data.eval + spec.data.calibration + 64)
    check_data_size(spec, count)
    out = {}
    for inp in spec.inputs:
        if inp.value is not None:
            continue
        shape = [count] + _item_shape(inp, dims, spec.data.seq_len)
        if inp.dtype.startswith("float"):
            if inp.range is not None:
                out[inp.name] = rng.uniform(inp.range[0], inp.range[1], size=shape).astype(inp.dtype)
            else:
                out[inp.name] = rng.standard_normal(shape).astype(inp.dtype)
        elif inp.dtype == "bool":
            out[inp.name] = np.ones(shape, dtype=bool)
        else:
            lo, hi = inp.range or (0, 2)
            out[inp.name] = rng.integers(int(lo), int(hi), size=shape).astype(inp.dtype)
        if inp.batch_axis is None and any(i.batch_axis is not None for i in spec.inputs):
            # beside batched inputs, one value a whole batch shares: the same for every item, so a batch of any
            # size (the reference's, a variant's) is fed alike
            out[inp.name] = np.repeat(out[inp.name][:1], count, axis=0)
    return Items(out)


@source("python")
def python_data(spec: Spec, spec_dir: Path, count: int, tokenizer=None) -> Items:
    """Items made by a user function ``fn(count=..., seed=..., **kwargs) -> {name: array, '__labels__': labels}``."""
    from optbench.paths import call_entrypoint, import_entrypoint

    fn = import_entrypoint(spec.data.entrypoint, spec_dir, field="data.entrypoint")
    try:
        arrays = call_entrypoint(fn, {**spec.data.kwargs, "count": count}, None, spec.seed)
    except SpecError:
        raise
    except Exception as e:
        raise SpecError(f"the data entrypoint raised {e.__class__.__name__}: {str(e)[:200]}",
                        field="data.entrypoint", found=repr(spec.data.entrypoint)) from None
    if not isinstance(arrays, dict) or not arrays:
        raise SpecError("the data entrypoint must return a dict of arrays keyed by input name",
                        field="data.entrypoint", found=type(arrays).__name__)
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    labels = arrays.pop("__labels__", None)
    return Items(arrays, labels)


@source("digits")
def digits(spec: Spec, spec_dir: Path, count: int, tokenizer=None) -> Items:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = (d.images.astype(np.float32) / 16.0)[:, None, :, :]
    name = spec.inputs[0].name
    return Items({name: images}, d.target.astype(np.int64))


@source("npz")
def npz(spec: Spec, spec_dir: Path, count: int, tokenizer=None) -> Items:
    path = resolve_path(spec.data.path, spec_dir / "spec.yaml")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (ValueError, OSError) as e:
        raise SpecError(f"cannot read npz file: {e}", file=str(path), field="data.path") from None
    labels = None
    if spec.data.labels:
        if spec.data.labels not in arrays:
            raise SpecError("labels array not in the npz file", file=str(path), field="data.labels",
                            expected=f"one of {sorted(arrays)}", found=repr(spec.data.labels))
        labels = arrays.pop(spec.data.labels)
    lengths = {k: len(v) for k, v in arrays.items() if v.ndim}
    if len(set(lengths.values())) > 1 or (labels is not None and len(labels) not in lengths.values()):
        raise SpecError("npz arrays differ in their first (item) dimension", file=str(path), field="data.path",
                        found=str(lengths))
    return Items(arrays, labels)


@source("text")
def text(spec: Spec, spec_dir: Path, count: int, tokenizer=None) -> Items:
    if tokenizer is None:
        raise SpecError("data source 'text' needs a model with a tokenizer (source: transformers)", field="data.source")
    path = resolve_path(spec.data.path, spec_dir / "spec.yaml")
    sentences = [s.strip() for s in Path(path).read_text().splitlines() if s.strip()]
    if not sentences:
        raise SpecError("the text file holds no sentences (one per line)", file=str(path), field="data.path")
    seq = max(_max_dims(spec).get("seq", spec.data.seq_len if hasattr(spec.data, "seq_len") else 128), 8)
    enc = tokenizer(sentences, padding="max_length", truncation=True, max_length=seq, return_tensors="np")
    names = {i.name for i in spec.inputs}
    out = {k: np.asarray(v).astype(np.int64) for k, v in enc.items() if k in names}
    return Items(out)
