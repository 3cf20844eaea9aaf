"""A variant's artifacts: the (transformed) torch module, its fp32 ONNX export and the conversion to the precision
the backend asks for (fp16 graph, int8 Q/DQ), each through the content-addressed cache so variants that share a
build (the same ONNX file at another batch size) build it once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optbench.measure.memory import path_bytes
from optbench.plan import Variant
from optbench.row import warning
from optbench.run.context import Context
from optbench.transforms import apply_transform


def load_base_module(ctx: Context) -> Any:
    """The model's torch module as the run prepared it, wrapped to reset before every call where the spec names a
    reset (:mod:`optbench.models.reset`)."""
    from optbench.models.reset import with_reset

    return with_reset(_stored_module(ctx), ctx.spec.model, ctx.spec_dir)


def _stored_module(ctx: Context) -> Any:
    import torch

    if ctx.spec.model.source == "python":
        from optbench.paths import import_entrypoint

        import_entrypoint(ctx.spec.model.entrypoint, ctx.spec_dir)  # classes the pickle refers to
    if ctx.prepared.get("model_format") == "file":  # TorchScript, torch.export: read again from the user's file
        from optbench.models import load_model

        loaded = load_model(ctx.spec.model, ctx.spec_dir, seed=ctx.spec.seed)
        if loaded.identity != ctx.prepared["identity"]:
            raise RuntimeError(f"the model file {ctx.prepared['model_path']} changed since the run read it")
        return loaded.module
    path = ctx.cache.verify(Path(ctx.prepared["model_path"]))
    if ctx.prepared.get("model_format") == "state_dict":  # the architecture rebuilt, the weights as plain tensors
        from optbench.models import load_model

        module = load_model(ctx.spec.model, ctx.spec_dir, seed=ctx.spec.seed).module
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return module.eval()
    # a full pickle (the model's own classes), read only after its digests matched this user's ledger
    return torch.load(path, map_location="cpu", weights_only=False).eval()


def transformed_module(ctx: Context, v: Variant) -> tuple[Any, dict]:
    import json

    import torch

    base = load_base_module(ctx)
    if v.transform == "none":
        return base, {}
    tspec = next(t for t in ctx.spec.variants.transforms if t != "none" and t.name == v.transform)
    key = ctx.cache.key("transform", [ctx.prepared["identity"], tspec.model_dump(mode="json"), ctx.spec.seed])

    def build(folder: Path) -> None:
        module, facts = apply_transform(base, tspec, ctx)
        torch.save(module, folder / "model.pt")
        (folder / "facts.json").write_text(json.dumps(facts))

    path, _ = ctx.cache.get_or_build(key, "model.pt", build)
    facts = json.loads((path.parent / "facts.json").read_text())
    from optbench.models.reset import with_reset

    module = torch.load(ctx.cache.verify(path), map_location="cpu", weights_only=False).eval()
    return with_reset(module, ctx.spec.model, ctx.spec_dir), facts


def fp32_onnx(ctx: Context, v: Variant, module: Any) -> tuple[Path, dict]:
    """The fp32 ONNX of the variant's model: the torch module's export (cached), or the model's ONNX file (given,
    or converted from another framework when the run prepared)."""
    from optbench.export.onnx import export_onnx

    spec = ctx.spec
    if module is None:
        return Path(ctx.prepared["model_path"]), {}
    sample = next(ctx.splits.eval.at_shape(spec.inputs, v.dims).batches(ctx.sample_batch(max(2, v.batch_size))))[0]
    key = ctx.cache.key("onnx", [ctx.prepared["identity"], v.transform, spec.export.model_dump(mode="json"),
                                 [i.model_dump(mode="json") for i in spec.inputs], _tspec(ctx, v),
                                 ctx.prepared["output_axes"]])
    fp32, facts, cached = _cached(ctx, key, lambda out: export_onnx(
        module, spec.inputs, sample, out, spec.export, ctx.prepared["output_names"], ctx.prepared["output_axes"]))
    return fp32, {**facts, "export_cached": cached}


def onnx_artifact(ctx: Context, v: Variant, module: Any, precision: str) -> tuple[Path, dict]:
    """The fp32 ONNX export, then the conversion to ``precision`` (fp16 graph, int8 Q/DQ) the backend asks for."""
    spec = ctx.spec
    fp32, info = fp32_onnx(ctx, v, module)
    if precision not in ("fp16", "int8"):
        return fp32, info
    q = v.int8 or {}
    static_pc = precision == "int8" and q.get("mode", "static") == "static" and q.get("per_channel", True)
    norm, facts = normalized_copy(ctx, v, fp32, min_opset=13 if static_pc else 0)
    info.update(facts)
    if precision == "fp16":
        from optbench.export.precision import RECIPE, convert_fp16

        keep = (v.fp16 or {}).get("fp32_nodes")
        key = ctx.cache.key("fp16", [_file_key(norm), RECIPE] + ([v.fp16] if keep else []))
        path, facts, _ = _cached(ctx, key, lambda out: convert_fp16(norm, out, keep))
        return path, {**info, **facts, "source_onnx": str(norm)}
    from optbench.transforms.quantize import RECIPE as QRECIPE
    from optbench.transforms.quantize import calibration_digest, quantize_onnx

    cal = calibration_digest(ctx.splits.calibration.at_shape(spec.inputs, v.dims), q.get("samples", 256))
    from optbench.export.precision import MIXED_RECIPE

    key = ctx.cache.key("int8", [_file_key(norm), v.int8, v.dims, cal, QRECIPE] + ([MIXED_RECIPE] if q.get("fp16_nodes") else []))
    path, facts, _ = _cached(ctx, key, lambda out: quantize_onnx(ctx, norm, out, v, module))
    graph = dict(facts.get("int8_graph") or {})  # a copy: the cached facts stay as built
    # the graph's facts hold text (they are cached as built); the row's warnings are typed
    warnings = [warning("int8_graph", w) if isinstance(w, str) else w for w in graph.get("warnings", [])]
    if spec.data.source == "synthetic":  # said in every int8 row, never silently
        cal = {**cal, "data": "random"}
        warnings.append(warning("calibration", "calibrated on random inputs (data: synthetic): the int8 scales fit "
                                               "noise, not the model's real inputs"))
    if path_bytes(path) >= path_bytes(fp32):
        warnings.append(warning("int8_size", f"the int8 file is not smaller than fp32 ({path_bytes(path) / 1e6:.2f} "
                                             f"vs {path_bytes(fp32) / 1e6:.2f} MB)"))
    if warnings:
        graph["warnings"] = warnings
    return path, {**info, **facts, "calibration": cal, "source_onnx": str(norm),
                  **({"int8_graph": graph} if graph else {})}


def converted_onnx(cache: Any, native: Any, identity: str, opset: int) -> tuple[Path, dict]:
    """A framework's model file as ONNX (see :mod:`optbench.export.native`), cached by the model's content, its entry
    point, the opset (and the converter's versions: ``optbench.cache.BUILT_BY``); with the conversion step for the
    rows."""
    import json

    from optbench.export.native import native_to_onnx

    key = cache.key("native-onnx", [identity, native.to_dict(), opset])

    def build(folder: Path) -> None:
        (folder / "step.json").write_text(json.dumps(native_to_onnx(native, folder / "model.onnx", opset)))

    path, _ = cache.get_or_build(key, "model.onnx", build)
    return path, json.loads((path.parent / "step.json").read_text())


def normalized_copy(ctx: Context, v: Variant, fp32: Path, min_opset: int) -> tuple[Path, dict]:
    """The fp32 graph normalised for conversion (see :mod:`optbench.export.normalize`), cached."""
    from optbench.export.normalize import RECIPE, normalize

    sample = next(ctx.splits.calibration.at_shape(ctx.spec.inputs, v.dims).batches(ctx.sample_batch(2)))[0]
    key = ctx.cache.key("normalized", [_file_key(fp32), RECIPE, min_opset])
    path, facts, _ = _cached(ctx, key, lambda out: normalize(fp32, out, min_opset, sample))
    return path, facts


def _cached(ctx: Context, key: str, make) -> tuple[Path, dict, bool]:
    """An ONNX artifact from the cache (or built by ``make(path) -> facts``), with the facts of its build."""
    import json

    def build(folder: Path) -> None:
        facts = make(folder / "model.onnx") or {}
        (folder / "facts.json").write_text(json.dumps(facts, default=str))

    path, cached = ctx.cache.get_or_build(key, "model.onnx", build)
    facts_file = path.parent / "facts.json"
    return path, (json.loads(facts_file.read_text()) if facts_file.exists() else {}), cached


def _tspec(ctx: Context, v: Variant) -> Any:
    return next((t.model_dump(mode="json") for t in ctx.spec.variants.transforms if t != "none" and t.name == v.transform), None)


def _file_key(path: Path) -> str:
    from optbench.digest import file_digest

    return file_digest(path)


def module_bytes(module: Any) -> int:
    tensors = list(module.parameters()) + list(module.buffers())
    return int(sum(t.numel() * t.element_size() for t in tensors))
