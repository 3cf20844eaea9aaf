"""One isolated process per job: ``python -m optbench.worker JOB.json``.

``prepare`` loads data and the model once, saves the model, the splits and the reference
outputs to files; ``variant`` builds and measures one variant from those files and writes
its result row. A crash, a hang or an OOM here costs this variant only: the sweep turns the
missing output into a failed row.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optbench.cache import ArtifactCache
from optbench.data import Items, Splits
from optbench.spec.models import Spec

REF_BATCH = 64


# ---------------------------------------------------------------- files shared with the workers
def save_splits(path: Path, splits: Splits) -> None:
    arrays = {}
    for split in ("train", "calibration", "eval"):
        items: Items = getattr(splits, split)
        for k, v in items.inputs.items():
            arrays[f"{split}/{k}"] = v
        if items.labels is not None:
            arrays[f"{split}/__labels__"] = items.labels
    np.savez(path, **arrays)


def load_splits_file(path: Path) -> Splits:
    with np.load(path) as f:
        parts: dict[str, dict] = {"train": {}, "calibration": {}, "eval": {}}
        labels: dict[str, Any] = {}
        for key in f.files:
            split, name = key.split("/", 1)
            if name == "__labels__":
                labels[split] = f[key]
            else:
                parts[split][name] = f[key]
    return Splits(*(Items(parts[s], labels.get(s)) for s in ("train", "calibration", "eval")))


def dims_key(dims: dict[str, int]) -> str:
    return "x".join(f"{k}{v}" for k, v in sorted(dims.items())) or "static"


@dataclass
class Context:
    spec: Spec
    spec_dir: Path
    run_dir: Path
    cache: ArtifactCache
    splits: Splits
    prepared: dict

    @property
    def work(self) -> Path:
        return self.run_dir / "work"


def reference_outputs(session_infer, items: Items, batch: int, axes: dict | None = None) -> dict[str, np.ndarray]:
    """Every output of the reference over ``items``, item-major, in the model's order."""
    from optbench.outputs import concat_items, item_major

    return concat_items([(item_major(session_infer(feeds), axes), real) for feeds, real in items.batches(batch)])


def ref_key(dims: dict[str, int], output: str) -> str:
    return f"{dims_key(dims)}/{output}"


def load_reference(run_dir: Path, dims: dict[str, int]) -> dict[str, np.ndarray]:
    prefix = dims_key(dims) + "/"
    with np.load(run_dir / "work" / "reference.npz") as f:
        return {k[len(prefix):]: f[k] for k in f.files if k.startswith(prefix)}


# ---------------------------------------------------------------- prepare
def prepare(job: dict) -> dict:
    import torch

    from optbench.data import load_splits
    from optbench.models import load_model
    from optbench.spec.load import validate

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
        loaded = load_model(spec.model, spec_dir, train=splits.train, seed=spec.seed)
    save_splits(work / "data.npz", splits)
    info: dict[str, Any] = {"identity": loaded.identity}
    if loaded.module is not None:
        # a torchvision architecture is rebuilt from its name: its cached weights are a plain state dict, loaded
        # with weights_only=True; other modules (user code) are full pickles, guarded by the cache's ledger
        weights_only = spec.model.source == "torchvision"
        kind = "model-state" if weights_only else "model"
        path, _ = cache.get_or_build(cache.key(kind, loaded.identity), "model.pt",
                                     lambda d: torch.save(loaded.module.state_dict() if weights_only else loaded.module,
                                                          d / "model.pt"))
        info["model_format"] = "state_dict" if weights_only else "pickle"
        info.update(model_path=str(path), reference="torch fp32 cpu", params=int(sum(p.numel() for p in loaded.module.parameters())))
        infer = _torch_infer(loaded.module)
        names = list(infer(next(splits.eval.batches(1))[0]))
        info["output_names"] = loaded.output_names if len(loaded.output_names) == len(names) and \
            loaded.output_names != ["output"] else names
        infer = _renamed(infer, info["output_names"])
        graph = None
    else:
        from optbench.interpret import graph_facts

        info.update(model_path=str(loaded.onnx_path), output_names=loaded.output_names,
                    reference="onnxruntime fp32 cpu of the ONNX file as given (no torch model: no noise floor)")
        infer = ort_infer(loaded.onnx_path)
        graph = graph_facts(loaded.onnx_path)
    interp = interpret_model(spec, splits, infer, graph)
    save_interpretation(run_dir, interp)
    print("how optbench reads the model:\n" + interp.table(), flush=True)
    info.update(output_axes=interp.output_axes(), interpretation=interp.compact(),
                reference_batch=reference_batch(spec, interp))
    info.update(_reference_pass(spec, spec_dir, splits, infer, info, work))
    return info


def interpret_model(spec: Spec, splits: Splits, infer, graph: dict | None):
    """The model read at its first shape point (see :mod:`optbench.interpret`)."""
    from optbench.interpret import read_model

    first = _all_dims(spec)[0]
    return read_model(spec, infer, splits.eval.at_shape(spec.inputs, first), graph,
                      lambda b, dims: splits.eval.at_shape(spec.inputs, dims))


def save_interpretation(run_dir: Path, interp) -> None:
    from optbench.interpret import save

    save(run_dir, interp)


def reference_batch(spec: Spec, interp) -> int:
    """The batch the reference runs at: the model's fixed batch, 1 without a batch axis, else REF_BATCH."""
    if interp.fixed_batch is not None:
        return interp.fixed_batch
    return REF_BATCH if interp.batch == "dynamic" else 1


def _reference_pass(spec: Spec, spec_dir: Path, splits: Splits, infer, info: dict, work: Path) -> dict:
    """Reference outputs per shape; a shape the model rejects fails only that shape's variants."""
    from optbench.pipeline import judge_all

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


def _torch_infer(module):
    import torch

    from optbench.outputs import torch_to_numpy

    def infer(feeds):
        with torch.inference_mode():
            return torch_to_numpy(module(*(torch.from_numpy(v) for v in feeds.values())))
    return infer


def _renamed(infer, names: list[str]):
    return lambda feeds: dict(zip(names, infer(feeds).values()))


def ort_infer(path):
    """ONNX Runtime CPU inference of a model file: {output name: host array}, in the graph's order."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = {i.name for i in sess.get_inputs()}
    outputs = [o.name for o in sess.get_outputs()]

    def infer(feeds):
        from optbench.backends.base import host_array

        values = sess.run(outputs, {k: v for k, v in feeds.items() if k in names})
        return {n: host_array(v) for n, v in zip(outputs, values)}
    return infer


# ---------------------------------------------------------------- one variant
def run_variant(job: dict) -> dict:
    from optbench.pipeline import measure_variant

    spec_dir, run_dir = Path(job["spec_dir"]), Path(job["run_dir"])
    from optbench.data import feeds_of
    from optbench.spec.load import validate

    spec = validate(job["spec"], {}, str(run_dir / "spec.yaml"))
    splits = load_splits_file(run_dir / "work" / "data.npz")
    for items in (splits.train, splits.calibration, splits.eval):
        items.feed = feeds_of(spec.inputs)  # batch axes and constants: the model's layout
    ctx = Context(spec, spec_dir, run_dir, ArtifactCache(Path(job["cache_dir"]), enabled=not job.get("no_cache")),
                  splits, json.loads((run_dir / "work" / "prepare.json").read_text()))
    return measure_variant(ctx, job["variant"], build_only=job["mode"] == "build", rounds=job.get("rounds"),
                           timing_only=bool(job.get("timing_only")))


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    out = Path(job["out"])
    try:
        result = prepare(job) if job["mode"] == "prepare" else run_variant(job)
        status = 0
    except Exception as e:  # the worker's whole job is to turn any failure into a reported one
        from optbench.errors import OptbenchError

        message = e.format() if isinstance(e, OptbenchError) else f"{e.__class__.__name__}: {e}"
        stage = "prepare" if job["mode"] == "prepare" else _stage_now()
        result = {"status": "failed", "error": message.strip()[:2000], "failed_stage": stage,
                  "user_error": isinstance(e, OptbenchError), "traceback": traceback.format_exc()[-4000:]}
        status = 3
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, default=str))
    tmp.replace(out)
    return status


def _stage_now() -> str:
    import sys

    pipeline = sys.modules.get("optbench.pipeline")
    return pipeline.STAGE["now"] if pipeline is not None else "start"


def _vm_size_bytes() -> int:
    """Address space already mapped (the preloaded libraries); the memory cap is counted on top of it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


def wait_file(log: Path) -> Path:
    """Where a job's process announces a wait on a node lock while it lasts (beside its log)."""
    return log.with_name(log.name + ".waiting")


def _die_with_driver(driver: int, job_dir: Path) -> None:
    """Fork a watcher that ends this job's whole process group (and removes its temp folder) once the process
    that spawned it is gone, killed with -9 included: a hung worker must not outlive its driver and hold the
    node's timing lock. A process, not a thread, so a worker hung in native code holding the GIL still dies.
    It leaves quietly when the worker ends."""
    import shutil
    import signal
    import time

    worker = os.getpid()
    if os.fork() != 0:
        return
    try:
        while os.getppid() == worker:
            try:
                os.kill(driver, 0)
            except ProcessLookupError:
                shutil.rmtree(job_dir, ignore_errors=True)
                os.killpg(worker, signal.SIGKILL)
            except PermissionError:
                pass
            time.sleep(0.5)
    finally:
        os._exit(0)


def child_main(job_path: str, log_path: str, memory_limit_mb: int | None) -> None:
    """Entry of a job's process: stdout/stderr to the job's log, an address-space cap, then the job."""
    os.setpgid(0, 0)  # its own process group: a timeout ends whatever the job started, too
    job = json.loads(Path(job_path).read_text())
    if job.get("driver_pid"):
        _die_with_driver(int(job["driver_pid"]), Path(job_path).parent)
    import faulthandler

    # appending: the sweep may cut a runaway log short, and writes then go on at the new end
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    faulthandler.enable()  # a segfault leaves the Python stack in the log (the row's stderr tail)
    if job.get("mode") != "prepare":
        from optbench.exclusive import current

        label = f"optbench run {Path(job['run_dir']).name}, {(job.get('variant') or {}).get('id', job.get('mode'))}"
        # before this process does any work: a timing window elsewhere on the node waits for none
        current(label, wait_file(Path(log_path))).build()
    if memory_limit_mb:
        import resource

        cap = _vm_size_bytes() + memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    code = main([job_path])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
