"""What a model file says about its inputs, read by its own framework: names, dims (fixed sizes, named or unnamed
dynamic dims, or nothing at all where the format records no shapes) and element types. A spec-less run builds its
spec from this (see :mod:`optbench.quick`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optbench.errors import SpecError


@dataclass(frozen=True)
class DeclaredInput:
    """One model input: ``dims`` holds ints (fixed), strings (a dynamic dim the model names) and None (a dynamic dim
    without a name); ``dims`` None: the file does not record the input's shape (TorchScript)."""

    name: str
    dims: list[int | str | None] | None
    dtype: str


def declared_inputs(source: str, path: Path, outputs: list[str] | None = None) -> tuple[list[DeclaredInput], dict]:
    """The inputs the model file at ``path`` declares and the spec's ``model:`` section that loads it (``outputs``:
    a frozen graph's output tensors)."""
    model: dict[str, Any] = {"source": source, "path": str(path)}
    if outputs:
        if source != "tensorflow" or path.is_dir():
            raise SpecError("--outputs names a frozen graph's output tensors; this model names its own outputs",
                            found=",".join(outputs))
        model["outputs"] = outputs
    if source in ("torchscript", "exported"):
        from optbench.extras import require

        require("torch", "torch", "a TorchScript file" if source == "torchscript" else "a torch.export program")
    read = {"onnx": _onnx, "torchscript": _torchscript, "exported": _exported}.get(source, _native)
    return read(model, path), model


def _onnx(model: dict, path: Path) -> list[DeclaredInput]:
    from onnx import TensorProto

    from optbench.paths import ONNX_DTYPES, check_onnx

    graph = check_onnx(path, str(path), None).graph
    inits = {i.name for i in graph.initializer}
    out = []
    for inp in (i for i in graph.input if i.name not in inits):
        t = inp.type.tensor_type
        dtype = ONNX_DTYPES.get(t.elem_type) or f"ONNX element type {TensorProto.DataType.Name(t.elem_type)}"
        dims = [int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]
        out.append(DeclaredInput(inp.name, dims if t.HasField("shape") else None, dtype))
    return out


def _native(model: dict, path: Path) -> list[DeclaredInput]:
    """TFLite, TensorFlow and OpenVINO files: read by the model source that runs them, so the inputs a spec-less
    spec names are the ones the run binds."""
    from pydantic import TypeAdapter, ValidationError

    from optbench.models import load_model
    from optbench.spec.models import ModelSpec

    try:
        spec = TypeAdapter(ModelSpec).validate_python(model)
    except ValidationError as e:
        raise SpecError(f"{path.name}: {e.errors()[0]['msg']}") from None
    try:
        native = load_model(spec, path.parent).native
    except SpecError as e:
        if e.field == "model.outputs":  # a frozen graph's outputs: a flag here, a spec field in a spec
            raise SpecError(e.message, expected="--outputs NODE:0[,NODE:1...]", found=e.found) from None
        raise
    return [DeclaredInput(i["model"], i.get("shape"), i["dtype"]) for i in native.inputs]


def _torchscript(model: dict, path: Path) -> list[DeclaredInput]:
    """A TorchScript module's forward arguments: names only (the file records no shapes or dtypes)."""
    import torch

    from optbench.models.trust import check_file

    check_file("torchscript", path)  # before torch.jit.load runs any of its code
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as e:
        raise SpecError(f"{path.name} is not a TorchScript file torch can load: {e.__class__.__name__}: "
                        f"{(str(e).strip().splitlines() or [''])[0][:200]}") from None
    return [DeclaredInput(a.name, None, "float32") for a in module.forward.schema.arguments[1:]]


def _exported(model: dict, path: Path) -> list[DeclaredInput]:
    """A torch.export program's user inputs, with the shapes it was exported with (its dynamic dims are symbols)."""
    import torch

    from optbench.models.trust import check_file, load_exported

    check_file("exported", path)
    try:
        program = load_exported(path, trusted=False)  # its pickles read with weights_only=True, never unsafely
    except SpecError:
        raise
    except Exception as e:
        raise SpecError(f"{path.name} is not a torch.export program torch can load: {e.__class__.__name__}: "
                        f"{(str(e).strip().splitlines() or [''])[0][:200]}") from None
    users = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    values = {n.name: n.meta.get("val") for n in program.graph.nodes if n.op == "placeholder"}
    out = []
    for name in users:
        val = values.get(name)
        if not isinstance(val, torch.Tensor):
            raise SpecError(f"input '{name}' of {path.name} is not a tensor ({type(val).__name__}): optbench feeds "
                            "tensors only")
        dims = [int(d) if isinstance(d, int) else str(d) for d in val.shape]
        out.append(DeclaredInput(name, dims, str(torch.empty(0, dtype=val.dtype).numpy().dtype)))
    return out
