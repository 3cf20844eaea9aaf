"""What a run keeps so its torch rows can be timed again later: a copy of the model's entrypoint file and the
arguments it was built with, and the module rebuilt from them.

A row whose backend runs the torch module (torch eager, torch.compile) records no file: the module lives in the
worker process. The user's ``model.py`` may change after the run (that is usually why two runs are compared), so
re-timing cannot import it again. The run's preparation therefore copies the entrypoint file into the artifact
cache, content-addressed (its key is the file's digest, so the same file is kept once however many runs use it)
and vouched for by this user's ledger like every cached artifact (:mod:`optbench.cache`); it records where, with the
function's name, its keyword arguments, the seed and a digest of the weights the module had (``prepare.json``'s
``entrypoint``). A re-timing process imports the copy (under the content-derived module name a run uses, so the
module's classes are the ones the run pickled), builds the module from the same arguments and seed, and refuses it
when its weights differ from the recorded digest: it must be the module the run timed.

Not kept, and so not re-timed (the reason is said): entrypoints that are installed modules rather than files (their
code is the installed package's), entrypoints that train on the spec's data (each re-timing process would train
again), other model sources, and variants that transform the module (prune, distill: rebuilt per process).
"""

from __future__ import annotations

import inspect
import shutil
from pathlib import Path
from typing import Any

from optbench.cache import ArtifactCache
from optbench.digest import file_digest, weights_digest
from optbench.paths import call_entrypoint, import_entrypoint, resolve_path


def keep_entrypoint(model_spec: Any, spec_dir: Path, cache: ArtifactCache, module: Any, seed: int) -> dict:
    """Keep a python model's entrypoint file for re-timing; the record prepare.json holds (``kept`` None and
    ``why`` where it is not kept)."""
    target, func = model_spec.entrypoint.split(":")
    record: dict[str, Any] = {"function": func, "kwargs": dict(model_spec.kwargs), "seed": seed, "kept": None}
    if not (target.endswith(".py") or "/" in target):
        return {**record, "why": f"its entrypoint is the installed module {target}, not a file a run copies"}
    fn = import_entrypoint(model_spec.entrypoint, spec_dir)
    if "train" in inspect.signature(fn).parameters and "train" not in model_spec.kwargs:
        return {**record, "why": "its entrypoint trains the model on the spec's data (every re-timing process would "
                                 "train it again)"}
    path = resolve_path(target, spec_dir / "spec.yaml").resolve()
    digest = file_digest(path)
    # under --no-cache too: get_or_build writes (refreshes) the cached copy then, as it does every artifact
    copy, _ = cache.get_or_build(cache.key("entrypoint", digest), path.name,
                                 lambda folder: shutil.copyfile(path, folder / path.name))
    return {**record, "kept": str(copy), "digest": digest, "weights": weights_digest(module), "why": None}


def why_not_rebuilt(prepared: dict, source: str) -> tuple[Path | None, str | None]:
    """The kept copy of the entrypoint a torch row is rebuilt from, or why there is none."""
    record = prepared.get("entrypoint")
    if source != "python":
        return None, f"its backend runs the torch module, and the run's model source is {source}: only a python " \
                     f"entrypoint file is kept to rebuild it"
    if not record:
        return None, "its backend runs the torch module, and the run kept no copy of its entrypoint (made before " \
                     "runs kept one)"
    if not record.get("kept"):
        return None, f"its backend runs the torch module, which cannot be rebuilt: {record.get('why')}"
    copy = Path(record["kept"])
    if not copy.exists():
        return None, f"the run's copy of its entrypoint {copy} is gone (the artifact cache was cleared)"
    if file_digest(copy) != record.get("digest"):
        return copy, f"the run's copy of its entrypoint {copy} no longer holds what the run read"
    return copy, None


def rebuilt_module(prepared: dict, cache: ArtifactCache) -> Any:
    """The run's torch module built again from its kept entrypoint copy, its arguments and seed (in a re-timing
    worker process); refused unless its weights are the ones the run had."""
    import torch

    record = prepared["entrypoint"]
    copy = cache.verify(Path(record["kept"]))
    fn = import_entrypoint(f"{copy}:{record['function']}", copy.parent)
    torch.manual_seed(record["seed"])  # as the run's preparation built it (optbench.models.sources)
    module = call_entrypoint(fn, record["kwargs"], None, record["seed"]).eval()
    if weights_digest(module) != record["weights"]:
        raise RuntimeError(f"the module rebuilt from the run's copy of {Path(record['kept']).name} has other weights "
                           f"than the run's (its entrypoint does not build the same module from the same seed)")
    return module
