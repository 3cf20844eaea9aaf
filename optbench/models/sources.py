"""Built-in model sources: torchvision, python, onnx, transformers."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

from optbench.digest import file_digest
from optbench.errors import SpecError
from optbench.models.base import LoadedModel, model_source
from optbench.paths import call_entrypoint, import_entrypoint, resolve_path


def _ident(spec, *parts: str) -> str:
    payload = json.dumps([spec.model_dump(mode="json"), *parts], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def file_identity(spec, path: Path) -> str:
    """The identity a model file's bytes give it under its spec entry (an ONNX file, a TorchScript file): a run
    records it, so whether the file still holds what the run read can be told later."""
    return _ident(spec, file_digest(path))


@model_source("torchvision")
def torchvision_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    import torch
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(spec.name)
    except ValueError:
        known = ", ".join(sorted(torchvision.models.list_models(torchvision.models))[:12])
        raise SpecError("unknown torchvision model", field="model.name", expected=f"one of {known}, ...",
                        found=repr(spec.name)) from None
    torch.manual_seed(seed)
    kwargs = {"num_classes": spec.num_classes} if spec.num_classes else {}
    module = builder(weights=None, **kwargs)
    digest = ""
    if spec.weights:
        path = resolve_path(spec.weights, spec_dir / "spec.yaml")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            module.load_state_dict(state.get("state_dict", state) if isinstance(state, dict) else state)
        except Exception as e:
            raise SpecError(f"cannot load weights: {e.__class__.__name__}: {str(e).splitlines()[0][:160]}",
                            field="model.weights", found=repr(spec.weights)) from None
        digest = file_digest(path)
    return LoadedModel(module.eval(), identity=_ident(spec, digest, str(seed)))


@model_source("python")
def python_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    import torch

    fn = import_entrypoint(spec.entrypoint, spec_dir)
    torch.manual_seed(seed)
    try:
        module = call_entrypoint(fn, spec.kwargs, train, seed)
    except SpecError:
        raise
    except Exception as e:
        raise SpecError(f"the entrypoint raised {e.__class__.__name__}: {str(e)[:200]}",
                        field="model.entrypoint", found=repr(spec.entrypoint)) from None
    if not isinstance(module, torch.nn.Module):
        raise SpecError("the entrypoint must return a torch.nn.Module", field="model.entrypoint",
                        found=type(module).__name__)
    target = spec.entrypoint.split(":")[0]
    path = resolve_path(target, spec_dir / "spec.yaml")
    digest = file_digest(path) if path.is_file() else ""
    # "module-by-content": pickles made when user modules were named by their path are not reused; a model
    # trained on the spec's training split is named by that split too (another spec's split trains other weights)
    parts = [digest, str(seed), "module-by-content"]
    if train is not None and "train" in inspect.signature(fn).parameters:
        parts.append("train-" + train.digest(with_labels=True)[:16])
    return LoadedModel(module.eval(), identity=_ident(spec, *parts))



@model_source("onnx")
def onnx_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    import onnx

    from optbench.paths import resolve_model_file

    path = resolve_model_file(spec.path, spec_dir / "spec.yaml")
    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(str(path))  # by path: external data resolved beside the model
    except Exception as e:
        raise SpecError(f"not a valid ONNX model: {e.__class__.__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}",
                        field="model.path", found=repr(spec.path)) from None
    outputs = [o.name for o in proto.graph.output]
    return LoadedModel(None, onnx_path=path, output_names=outputs, identity=file_identity(spec, path),
                       framework="onnx")


def package_dir(path: str) -> Path:
    """``package:NAME`` → the directory of the installed package NAME (models shipped on PyPI)."""
    import importlib.util

    name = path.split(":", 1)[1]
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise SpecError("model package is not installed", field="model.path", expected="an installed package",
                        found=repr(name))
    root = Path(next(iter(found.submodule_search_locations)))
    hits = sorted(p.parent for p in root.rglob("config.json"))
    if not hits:
        raise SpecError("model package holds no config.json", field="model.path", found=str(root))
    return hits[0]


@model_source("transformers")
def transformers_model(spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer

    from optbench.models.wrappers import PooledEncoder

    path = package_dir(spec.path) if spec.path.startswith("package:") else resolve_path(spec.path, spec_dir / "spec.yaml")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        encoder = AutoModel.from_pretrained(str(path), local_files_only=True, attn_implementation="eager")
    except Exception as e:
        raise SpecError(f"cannot load transformers model: {str(e).splitlines()[0][:200]}", field="model.path",
                        found=repr(spec.path)) from None
    module = PooledEncoder(encoder, spec.pooling, spec.normalize).eval()
    weights = sorted(p for p in Path(path).iterdir() if p.suffix in (".safetensors", ".bin"))
    digest = file_digest(weights[0]) if weights else ""
    return LoadedModel(module, tokenizer=tokenizer, output_names=["embedding"], identity=_ident(spec, digest))
