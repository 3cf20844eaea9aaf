"""Model outputs as nouns: every output of a model, flattened and named, and the views that judge them.

A model returns a tensor, a tuple, a dict or a named tuple; ONNX graphs have named outputs. Both become
an ordered ``{name: array}`` with the batch on axis 0 (item-major). The spec's ``outputs:`` section turns
them into *views*: a whole output, or a named part of one sliced along an axis (YOLOv8's ``boxes`` and
``scores``), each with the task and budgets that judge it. Outputs the spec does not list are still
judged, with the default task, so nothing a model returns goes unchecked.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optbench.errors import SpecError


@dataclass(frozen=True)
class View:
    """One judged thing: an output, or the slice ``start:stop`` of it along ``axis`` (item-major axes)."""

    label: str
    output: str
    axis: int | None = None
    start: int | None = None
    stop: int | None = None
    task: Any = None  # a TaskSpec, or None: drift only
    budgets: dict = field(default_factory=dict)
    postprocess: str | None = None
    parts: dict = field(default_factory=dict)  # part name -> (axis, start, stop), for tasks over a split output

    def select(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        arr = arrays[self.output]
        if self.axis is None:
            return arr
        index = [slice(None)] * arr.ndim
        index[self.axis] = slice(self.start, self.stop)
        return arr[tuple(index)]


# ---------------------------------------------------------------- torch outputs
def flatten_torch(out: Any, prefix: str = "output") -> dict[str, Any]:
    """Every tensor of a torch model's output, in a stable order: a tensor is ``output``; tuples and lists are
    ``output``, ``output_1``, ...; dicts, ModelOutputs and named tuples by their keys (nested keys joined by '.')."""
    import torch

    found: dict[str, Any] = {}

    def walk(obj: Any, name: str | None, index: list[int]) -> None:
        if isinstance(obj, torch.Tensor):
            key = name if name is not None else (prefix if index[0] == 0 else f"{prefix}_{index[0]}")
            index[0] += 1
            found[key] = obj
        elif hasattr(obj, "_fields"):  # named tuple
            for k in obj._fields:
                walk(getattr(obj, k), k if name is None else f"{name}.{k}", index)
        elif isinstance(obj, dict) or hasattr(obj, "keys") and hasattr(obj, "__getitem__"):
            for k in obj.keys():
                walk(obj[k], str(k) if name is None else f"{name}.{k}", index)
        elif isinstance(obj, (list, tuple)):
            for item in obj:
                walk(item, None if name is None else f"{name}.{len(found)}", index)
        elif obj is not None:
            raise TypeError(f"model output of type {type(obj).__name__} holds no tensor")

    walk(out, None, [0])
    if not found:
        raise TypeError(f"model output of type {type(out).__name__} holds no tensor")
    return found


def torch_to_numpy(out: Any) -> dict[str, np.ndarray]:
    """Float outputs as float32, integer and boolean outputs as they are."""
    return {k: (t.detach().float() if t.is_floating_point() else t.detach()).cpu().numpy()
            for k, t in flatten_torch(out).items()}


def _positional(name: str) -> bool:
    """A name :func:`flatten_torch` made from a position (``output``, ``output_1``), not from the module's keys."""
    return name == "output" or (name.startswith("output_") and name[7:].isdigit())


def as_reference_names(out: dict[str, Any], names: list[str], by_name: bool, who: str = "the variant") -> dict:
    """A session's outputs under the reference's names, in the reference's order. A session that names its outputs
    (ONNX Runtime, OpenVINO, TFLite, TensorFlow, ...) is read by name, whatever its order, and names that differ from
    the reference's are an error naming both lists; one that cannot name them (a torch module returning a tuple) is
    read by position, in the order the reference recorded."""
    if not by_name and not any(_positional(n) and n not in names for n in out):
        by_name = True  # a torch module returning a dict (or named tuple) names its outputs by its own keys
    if by_name:
        if sorted(out) != sorted(names):
            if set(names) < set(out):  # every reference output, and more
                extra = next(n for n in out if n not in names)
                raise ValueError(f"output '{extra}' is not one the model returned when optbench read it (outputs "
                                 f"{list(names)}): an output that exists at some batch sizes only cannot be judged")
            raise ValueError(f"{who} names its outputs {list(out)}; the reference's are {list(names)}: outputs are "
                             f"paired by name, never by position")
        return {n: out[n] for n in names}
    if len(out) != len(names):
        raise ValueError(f"{who} returns {len(out)} unnamed output(s); the reference recorded {len(names)} "
                         f"{list(names)}")
    return dict(zip(names, out.values()))


# ---------------------------------------------------------------- batch axes
def item_major(arrays: dict[str, np.ndarray], axes: dict[str, Any] | None) -> dict[str, np.ndarray]:
    """Move each output's batch axis to 0, by the model's interpretation (:mod:`optbench.interpret`): an int is
    the axis; "stack" is an output of one item per call (a new axis 0); None is an output that holds no items
    (not compared). Outputs missing from ``axes`` are an error: nothing is read with a guessed axis."""
    out = {}
    for name, arr in arrays.items():
        if axes is None or name not in axes:
            raise ValueError(f"output '{name}' is not one the model returned when optbench read it (outputs "
                             f"{sorted(axes or {})}): an output that exists at some batch sizes only cannot be "
                             f"judged")
        axis = axes[name]
        if axis is None:
            continue
        out[name] = arr[None] if axis == "stack" else (np.moveaxis(arr, axis, 0) if axis else arr)
    return out


def concat_items(chunks: list[tuple[dict[str, np.ndarray], int]]) -> dict[str, np.ndarray]:
    """Concatenate item-major batch outputs, each cut to its real items (the last batch is padded)."""
    names = list(chunks[0][0]) if chunks else []
    return {n: np.concatenate([c[n][:real] for c, real in chunks]) for n in names}


# ---------------------------------------------------------------- views
def default_task(model_source: str, ref: np.ndarray, labels: np.ndarray | None) -> Any:
    """Classifier logits get classification; pooled sentence vectors get embedding; anything else drift only.
    Never classification for embeddings: a (N, 384) embedding is not 384 classes."""
    from optbench.spec.models import ClassificationTask, EmbeddingTask

    if ref.dtype.kind in "iub":  # class ids, masks, flags: compared exactly, never read as class scores
        return None
    if model_source == "transformers" and ref.ndim == 2:
        return EmbeddingTask(kind="embedding")
    if ref.ndim == 2 and ref.shape[1] > 1 and (model_source == "torchvision" or _int_labels(labels, len(ref))):
        return ClassificationTask(kind="classification")
    return None


def _int_labels(labels: np.ndarray | None, n: int) -> bool:
    return labels is not None and labels.ndim == 1 and len(labels) == n and np.issubdtype(labels.dtype, np.integer)


def build_views(spec: Any, refs: dict[str, np.ndarray], labels: np.ndarray | None) -> list[View]:
    """The views of a model whose (item-major) reference outputs are ``refs``."""
    # an entry that only says where a raw output keeps its batch may name an output a model-level hook consumed
    listed = {o.name: o for o in spec.outputs if o.name in refs or not only_reading(o)}
    if unknown := sorted(set(listed) - set(refs)):
        raise SpecError(f"outputs names {unknown}, which the model does not return", field="outputs",
                        expected=f"some of {list(refs)}", found=repr(unknown))
    views: list[View] = []
    for name, ref in refs.items():
        o = listed.get(name)
        if o is None:
            views.append(View(name, name, task=default_task(spec.model.source, ref, labels)))
            continue
        if o.ignore:
            continue
        axis = _item_axis(o, ref) if o.parts else None
        parts = {p.name: (axis, p.start, p.stop) for p in o.parts}
        for p in o.parts:
            if p.stop > ref.shape[axis]:
                raise SpecError(f"output '{name}' part '{p.name}' ends at {p.stop}, beyond the output's "
                                f"{ref.shape[axis]} along axis {o.axis}", field="outputs")
            views.append(View(p.name, name, axis, p.start, p.stop, p.task, p.budgets, o.postprocess))
        task = o.task if o.task is not None else (None if o.parts else default_task(spec.model.source, ref, labels))
        if task is not None or not o.parts:
            views.append(View(name, name, task=task, budgets=o.budgets, postprocess=o.postprocess, parts=parts))
    if not views:
        raise SpecError("every output is ignored: nothing would be judged, so every accuracy verdict would pass "
                        "without looking", field="outputs", expected="at least one output without ignore: true")
    labels_seen = [v.label for v in views]
    if len(set(labels_seen)) != len(labels_seen):
        raise SpecError(f"output and part names collide: {labels_seen}", field="outputs")
    return views


def only_reading(o: Any) -> bool:
    return bool(getattr(o, "batch_axis", None) is not None) and not (o.parts or o.task or o.postprocess or o.budgets)


def _item_axis(o: Any, ref: np.ndarray) -> int:
    """The spec names axes of the model's layout, batch included; arrays here are item-major with the batch
    on axis 0, which is the model's layout for every output whose batch is on axis 0."""
    axis = o.axis if o.axis >= 0 else ref.ndim + o.axis
    if not 0 < axis < ref.ndim:
        raise SpecError(f"output '{o.name}' axis {o.axis} is not an axis of its items (rank {ref.ndim}, "
                        f"axis 0 is the batch)", field="outputs")
    return axis
