"""The run's preparation, once per run in its own process: data and model loaded, the model read (see
:mod:`optbench.interpret`), the reference outputs per shape saved for the variants to be judged against."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optbench.backends import reference_backend
from optbench.cache import ArtifactCache
from optbench.data import Splits
from optbench.run.context import REF_BATCH, dims_key, ref_key, reference_outputs, save_splits
from optbench.run.judge import judge_all
from optbench.spec.models import Spec


def prepare(job: dict) -> dict:
    from optbench.data import load_splits
    from optbench.models import load_model
    from optbench.specfile.load import validate

    spec_dir, run_dir = Path(job["spec_dir"]), Path(job["run_dir"])
    spec: Spec = validate(job["spec"], {}, str(run_dir / "spec.yaml"))
    cache = ArtifactCache(Path(job["cache_dir"]), enabled=not job.get("no_cache"))
    work = run_dir / "work"
    work.mkdir(parents=True, exist_ok=True)
    if spec.model.source == "transformers":
        loaded = load_model(spec.model, spec_dir, seed=spec.seed)
        splits = load_splits(spec, spec_dir, tokenizer=loaded.tokenizer)
    else:
        splits = load_splits(spec, spec_dir)
        loaded = load_model(spec.model, spec_dir, train=splits.train, seed=spec.seed, inputs=spec.inputs)
    save_splits(work / "data.npz", splits)
    info: dict[str, Any] = {"identity": loaded.identity, "framework": loaded.framework, "spec_dir": str(spec_dir)}
    if loaded.module is not None:
        infer = _torch_model(spec, spec_dir, loaded, cache, splits, info)
        graph = None
    else:
        infer, graph = _file_model(spec, loaded, cache, info, bool(job.get("needs_onnx", True)))
    interp = interpret_model(spec, splits, infer, graph, _reset_methods(loaded.module))
    save_interpretation(run_dir, interp)
    print("how optbench reads the model:\n" + interp.table(), flush=True)
    info.update(output_axes=interp.output_axes(), interpretation=interp.compact(),
                reference_batch=reference_batch(spec, interp))
    info.update(_reference_pass(spec, spec_dir, splits, infer, info, work))
    return info


def _torch_model(spec: Spec, spec_dir: Path, loaded, cache: ArtifactCache, splits: Splits, info: dict):
    """A torch module's reference (torch on the CPU); the module kept in the cache for the variants, or read again
    from the user's file where it cannot be pickled (TorchScript, torch.export)."""
    import torch

    from optbench.models.reset import with_reset

    if loaded.from_file:
        from optbench.paths import resolve_model_file

        # the file itself, a 'package:NAME/...' path found in its package as the loader found it
        path, info["model_format"] = resolve_model_file(spec.model.path, spec_dir / "spec.yaml"), "file"
    else:
        # a torchvision architecture is rebuilt from its name: its cached weights are a plain state dict, loaded
        # with weights_only=True; other modules (user code) are full pickles, guarded by the cache's ledger
        weights_only = spec.model.source == "torchvision"
        kind = "model-state" if weights_only else "model"
        path, _ = cache.get_or_build(cache.key(kind, loaded.identity), "model.pt",
                                     lambda d: torch.save(loaded.module.state_dict() if weights_only else loaded.module,
                                                          d / "model.pt"))
        info["model_format"] = "state_dict" if weights_only else "pickle"
        if spec.model.source == "python":  # what its torch rows are re-timed from (optbench.run.kept)
            from optbench.run.kept import keep_entrypoint

            info["entrypoint"] = keep_entrypoint(spec.model, spec_dir, cache, loaded.module, spec.seed)
    ref = reference_backend("torch")
    info.update(model_path=str(path), reference=ref.reference_label("torch"), reference_backend=ref.name,
                params=int(sum(p.numel() for p in loaded.module.parameters())))
    infer = ref.reference_infer(with_reset(loaded.module, spec.model, spec_dir))
    names = list(infer(next(splits.eval.batches(1))[0]))
    info["output_names"] = loaded.output_names if len(loaded.output_names) == len(names) and \
        loaded.output_names != ["output"] else names
    return _renamed(infer, info["output_names"])


def _file_model(spec: Spec, loaded, cache: ArtifactCache, info: dict, needs_onnx: bool):
    """A model file's reference (its own framework on the CPU: ONNX Runtime, TensorFlow, LiteRT, OpenVINO) and, for
    a file of another framework, its ONNX conversion when a planned variant runs on ONNX (an op the converter cannot
    take is then an error before anything runs)."""
    from optbench.interpret import graph_facts

    ref = reference_backend(loaded.framework)
    info.update(output_names=loaded.output_names, reference_backend=ref.name)
    if loaded.native is None:  # an ONNX file
        info.update(model_path=str(loaded.onnx_path), reference=ref.reference_label("onnx"))
        return ref.reference_infer(loaded.onnx_path), graph_facts(loaded.onnx_path)
    native = loaded.native
    info.update(native=native.to_dict(), reference=f"{ref.reference_label(loaded.framework)} ({native.describe()})",
                model_path=native.path, conversion=[])
    onnx = None
    if needs_onnx and spec.model.kind.onnx is not None:
        from optbench.run.artifacts import converted_onnx

        onnx, step = converted_onnx(cache, native, loaded.identity, spec.export.opset)
        info.update(model_path=str(onnx), conversion=[step])
    return ref.reference_infer(native), native.declared()  # the dims of the model as given, as plan reads them


def interpret_model(spec: Spec, splits: Splits, infer, graph: dict | None, reset_methods: list[str] | None = None):
    """The model read at its first shape point (see :mod:`optbench.interpret`)."""
    from optbench.interpret import read_model

    first = _all_dims(spec)[0]
    return read_model(spec, infer, splits.eval.at_shape(spec.inputs, first), graph,
                      lambda b, dims: splits.eval.at_shape(spec.inputs, dims), reset_methods)


def _reset_methods(module) -> list[str] | None:
    """A torch module's methods that look like a reset (the message that asks for model.reset names them)."""
    if module is None:
        return None
    from optbench.models.reset import reset_methods

    return reset_methods(module)


def save_interpretation(run_dir: Path, interp) -> None:
    from optbench.interpret import save

    save(run_dir, interp)


def reference_batch(spec: Spec, interp) -> int:
    """The batch the reference runs at: the model's fixed batch, 1 without a batch axis, else REF_BATCH, or the eval
    split's size where it is smaller (a batch padded beyond the items computes repeats of them for nothing: 64 items
    for 8)."""
    if interp.fixed_batch is not None:
        return interp.fixed_batch
    return min(REF_BATCH, spec.data.eval) if interp.batch == "dynamic" else 1


def _reference_pass(spec: Spec, spec_dir: Path, splits: Splits, infer, info: dict, work: Path) -> dict:
    """Reference outputs per shape; a shape the model rejects fails only that shape's variants."""
    refs: dict[str, np.ndarray] = {}
    errors: dict[str, str] = {}
    tasks: dict[str, Any] = {}
    batch = info["reference_batch"]
    for dims in _all_dims(spec):
        items = splits.eval.at_shape(spec.inputs, dims)
        try:
            out = reference_outputs(infer, items, batch, info["output_axes"])
        except Exception as e:  # the model rejects this shape: its variants fail with this reason
            errors[dims_key(dims)] = f"the reference failed at shape {dims or 'static'} (batch {batch}): " + \
                f"{e.__class__.__name__}: {' '.join(str(e).split())[:600]}"
            continue
        # validates the spec's outputs against the model, and gives the reference's own task metrics
        judged = judge_all(spec, spec_dir, out, out, splits.eval.labels, Path(info["model_path"]))
        tasks[dims_key(dims)] = {k: {m: v for m, v in met.items() if m.startswith(("task_", "ctc_label", "det_map"))}
                                 for k, met in judged["outputs"].items()}
        refs.update({ref_key(dims, k): v for k, v in out.items()})
    if not refs:
        raise RuntimeError(next(iter(errors.values())))
    np.savez(work / "reference.npz", **refs)
    first = next(iter(tasks.values()))
    accuracy = next((m["task_accuracy"] for m in first.values() if m.get("task_accuracy") is not None), None)
    return {"reference_errors": errors, "reference_tasks": tasks, "reference_task_accuracy": accuracy,
            "output_shapes": {k.split("/", 1)[1]: list(v.shape[1:]) for k, v in refs.items()}}


def _all_dims(spec: Spec) -> list[dict[str, int]]:
    out: list[dict[str, int]] = []
    for shape in spec.variants.shapes or [{}]:
        d = {k: v for k, v in shape.items() if k != "batch"}
        if d not in out:
            out.append(d)
    return out


def _renamed(infer, names: list[str]):
    return lambda feeds: dict(zip(names, infer(feeds).values()))
