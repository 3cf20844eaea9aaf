"""A spec from a model file and flags (``optbench run model.onnx --precision fp32,int8 --batch 1,8``), and
``--set KEY.PATH=VALUE`` overrides of any spec.

What the graph does not say is never guessed silently: each inference (which input dim is the batch, the
sizes of other symbolic dims, random data) is returned as a note that the command prints, and a symbolic dim
without a size is an error naming the flag that gives it."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from optbench.errors import SpecError

_NAME = re.compile(r"[^A-Za-z0-9_]")


def split_list(text: str | None, what: str, cast=str) -> list | None:
    """``"1,8"`` -> [1, 8]; a value that does not cast is one clear line naming the flag."""
    if text is None:
        return None
    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            out.append(cast(part))
        except ValueError:
            raise SpecError(f"{what}: '{part}' is not {'an integer' if cast is int else cast.__name__}", found=repr(text)) from None
    if not out:
        raise SpecError(f"{what} is empty", found=repr(text))
    return out


def parse_shapes(text: str | None) -> dict[str, int]:
    """``--shapes height=640,width=640`` (trtexec writes name:dims; here: one size per symbolic dim)."""
    sizes: dict[str, int] = {}
    for part in split_list(text, "--shapes") or []:
        name, sep, value = part.partition("=")
        if not sep or not value.strip().isdigit() or int(value) < 1:
            raise SpecError("--shapes takes SYMBOL=SIZE pairs, e.g. --shapes height=640,width=640",
                            found=repr(part))
        sizes[name.strip()] = int(value)
    return sizes


# the framework whose runtime computes the reference of each kind of model file
FRAMEWORK = {"onnx": "onnx", "tflite": "tflite", "tensorflow": "tensorflow", "torchscript": "torch",
             "exported": "torch", "openvino": "openvino"}


def default_backends(source: str) -> list[str]:
    """The backends a spec-less run of a model file times by default: the runtime that computes its reference and
    the one ONNX files are judged against, where an ONNX can be made of it (an OpenVINO IR: none)."""
    from optbench.backends import reference_backend

    names = [reference_backend(FRAMEWORK[source]).name]
    if source != "openvino" and (onnx := reference_backend("onnx").name) not in names:
        names.append(onnx)
    return names


def parse_inputs(items: list[str] | None) -> dict[str, tuple[list[int | str], str | None]]:
    """``--input image=batch,1,8,8`` / ``--input ids=batch,seq:int64``: an input's shape (and dtype) where the model
    file does not record it (TorchScript) or records it otherwise than it is fed."""
    out: dict[str, tuple[list[int | str], str | None]] = {}
    for item in items or []:
        name, sep, rest = item.partition("=")
        dims_text, _, dtype = rest.partition(":")
        dims = [d.strip() for d in dims_text.split(",") if d.strip()]
        if not sep or not name.strip() or not dims:
            raise SpecError("--input takes NAME=DIM,DIM,...[:DTYPE], e.g. --input image=batch,3,224,224 or "
                            "--input ids=batch,seq:int64", found=repr(item))
        out[name.strip()] = ([int(d) if d.isdigit() else d for d in dims], dtype.strip() or None)
    return out


def spec_from_model(path: Path, *, precision: list[str] | None, batch: list[int] | None,
                    backends: list[str] | None, shapes: dict[str, int], data: Path | None,
                    labels: str | None = None, outputs: list[str] | None = None,
                    given: dict[str, tuple[list, str | None]] | None = None) -> tuple[dict[str, Any], list[str]]:
    """The spec of a spec-less run of a model file of any format optbench reads (told from its content and suffix,
    see :mod:`optbench.models.detect`), and the notes saying what was inferred and why."""
    from optbench.models.declared import declared_inputs
    from optbench.models.detect import model_format

    path = path.resolve()
    source = model_format(path)
    declared, model = declared_inputs(source, path, outputs)
    notes: list[str] = [f"{path.name}: {_LABELS[source]}"]
    inputs = _spec_inputs(declared, given or {}, path, notes)
    unsized: list[str] = []
    for inp in inputs:
        unsized += [d for d in inp["shape"] if isinstance(d, str) and d != "batch" and d not in unsized]
    if missing := [d for d in unsized if d not in shapes]:
        example = ",".join(f"{d}=SIZE" for d in missing)
        raise SpecError(f"the model leaves {missing} symbolic and optbench does not guess sizes", file=str(path),
                        expected=f"--shapes {example}")
    named_batch = {d.dims[0] for d in declared if d.dims and isinstance(d.dims[0], str)} | {"batch"}
    if batched := sorted(set(shapes) & named_batch):
        raise SpecError(f"--shapes names {batched}, the model's batch dim, which --batch sizes",
                        expected=f"--batch {shapes[batched[0]]}" + (f" and --shapes for {unsized}" if unsized else ""))
    if extra := sorted(set(shapes) - set(unsized)):
        raise SpecError(f"--shapes names {extra}, which are not symbolic dims of the model's inputs",
                        expected=f"some of {unsized}" if unsized else "no --shapes (every dim is fixed)")
    has_batch = any("batch" in i["shape"] for i in inputs)
    if not has_batch and batch and set(batch) != {1}:
        raise SpecError(f"--batch {batch}: no input of the model has a batch dim, so it runs at batch 1",
                        expected="--batch 1")
    spec: dict[str, Any] = {
        "name": _NAME.sub("-", path.stem).strip("-") or "model",
        "description": f"spec-less run of {path.name}",
        "model": model,
        "inputs": inputs,
        "variants": {"precision": precision or ["fp32", "fp16", "int8"], "batch_size": batch or [1]},
        "backends": backends or default_backends(source),
    }
    if unsized:
        spec["variants"]["shapes"] = [{d: shapes[d] for d in unsized}]
    if data is None:
        spec["data"] = {"source": "synthetic", "calibration": 64, "eval": 64}
        notes.append("data: random inputs (no --data): drift compares the variants on noise, and int8 rows are "
                     "calibrated on it (their rows say so); pass --data FILE.npz with one array per input")
    else:
        spec["data"] = _npz_data(data, [i["name"] for i in inputs], labels)
    return spec, notes


_LABELS = {"onnx": "an ONNX file", "tflite": "a TFLite flatbuffer", "tensorflow": "a TensorFlow model",
           "torchscript": "a TorchScript module", "exported": "a torch.export program", "openvino": "an OpenVINO IR"}


def _spec_inputs(declared: list, given: dict, path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """The spec's inputs from the model's (``given``: --input values, which take precedence), the batch read from the
    first dim: dynamic there is the batch, fixed at 1 a batch fixed at 1, anything else no batch."""
    from optbench.paths import ONNX_DTYPES

    names = {d.name for d in declared}
    if unknown := sorted(set(given) - names - {n.removesuffix(":0") for n in names}):
        raise SpecError(f"--input names {unknown}, which the model does not take", file=str(path),
                        expected=f"some of {sorted(names)}")
    inputs, batch_symbols = [], set()
    for d in declared:
        name = d.name.removesuffix(":0")  # TensorFlow's 'x:0' is its node 'x'
        dims, dtype = given.get(name) or given.get(d.name) or (d.dims, None)
        dtype = dtype or d.dtype
        if dtype not in ONNX_DTYPES.values():
            raise SpecError(f"input '{d.name}' is {dtype}, which optbench cannot feed", file=str(path),
                            expected=f"one of {sorted(ONNX_DTYPES.values())}")
        if dims is None:
            raise SpecError(f"{path.name} does not record the shape of input '{name}' (a TorchScript file keeps "
                            f"none); give it", file=str(path), expected=f"--input {name}=batch,DIM,...[:DTYPE]")
        dims = [d if isinstance(d, int) else _symbol(d or "", name, k) for k, d in enumerate(dims)]
        if dims and isinstance(dims[0], str):
            batch_symbols.add(dims[0])
            notes.append(f"input '{name}' {_show(dims)}: dim 0 ('{dims[0]}') read as the batch: the first dim, "
                         "symbolic in the model (a model batched elsewhere needs a spec: inputs: shape with 'batch')")
            dims[0] = "batch"
        elif dims and dims[0] == 1 and len(dims) > 1:
            notes.append(f"input '{name}' {_show(dims)}: the model fixes dim 0 at 1, read as a batch fixed at 1 "
                         "(other batch sizes are skipped with the evidence)")
            dims[0] = "batch"
        else:
            notes.append(f"input '{name}' {_show(dims)}: no symbolic first dim, so no batch axis: one item per "
                         "call, batch size 1")
        inputs.append({"name": name, "shape": dims, "dtype": dtype})
    for inp in inputs:
        inp["shape"] = ["batch" if d in batch_symbols else d for d in inp["shape"]]
    return inputs


def _npz_data(path: Path, names: list[str], labels: str | None) -> dict[str, Any]:
    import numpy as np

    path = path.resolve()
    try:
        with np.load(path, allow_pickle=False) as f:
            lengths = {k: len(f[k]) for k in f.files if f[k].ndim}
    except (ValueError, OSError) as e:
        raise SpecError(f"--data: cannot read {path} as .npz: {e}") from None
    if missing := [n for n in names if n not in lengths]:
        raise SpecError(f"--data {path.name} has no array for inputs {missing}", expected=f"arrays named {names}",
                        found=str(sorted(lengths)))
    n = min(lengths[k] for k in names)
    if n < 2:
        raise SpecError(f"--data {path.name} holds {n} item(s); calibration and eval need 2 at least")
    calibration = min(256, max(1, n // 4))
    out: dict[str, Any] = {"source": "npz", "path": str(path), "calibration": calibration,
                           "eval": min(512, n - calibration), "train": 0}
    if labels:
        out["labels"] = labels
    return out


def _symbol(param: str, input_name: str, k: int) -> str:
    """A graph's dim_param as a spec symbol; an unnamed one ('', '?', '-1') named after its input and axis."""
    name = _NAME.sub("_", param).strip("_")
    if not name or not name[0].isalpha():
        name = f"{_NAME.sub('_', input_name).strip('_') or 'input'}_dim{k}"
    return name


def _show(dims: list) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


# ---------------------------------------------------------------- --set
def apply_overrides(data: dict[str, Any], sets: list[str] | None) -> dict[str, Any]:
    """``KEY.PATH=VALUE`` (VALUE read as YAML: ``3``, ``[1, 8]``, ``{rounds: 3}``) set into a spec's mapping;
    list items by index (``backends.0=torch``). A path through a scalar is one clear error."""
    for item in sets or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError("--set takes KEY.PATH=VALUE, e.g. --set measure.rounds=3", found=repr(item))
        from optbench.safe_yaml import safe_yaml

        _, value = safe_yaml(raw, f"--set {key}'s value")  # the spec file's bounds: aliases, size, nesting
        parts = key.strip().split(".")
        node: Any = data
        for depth, part in enumerate(parts):
            last = depth == len(parts) - 1
            if isinstance(node, list):
                if not part.isdigit() or int(part) >= len(node):
                    raise SpecError(f"--set {key}: '{part}' is not an index of the {len(node)}-item list at "
                                    f"{'.'.join(parts[:depth]) or 'the top'}", found=repr(item))
                if last:
                    node[int(part)] = value
                else:
                    node = node[int(part)]
            elif isinstance(node, dict):
                if last:
                    node[part] = value
                else:
                    node = node.setdefault(part, {})
            else:
                raise SpecError(f"--set {key}: {'.'.join(parts[:depth])} is a value ({node!r}), not a mapping",
                                found=repr(item))
    return data
