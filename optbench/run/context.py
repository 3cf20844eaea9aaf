"""What a run's processes share through files in its ``work`` folder: the data splits, the reference outputs per
shape, the preparation facts, and the :class:`Context` a variant is built in."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optbench.cache import ArtifactCache
from optbench.data import Items, Splits, feeds_of
from optbench.spec.models import Spec
from optbench.specfile.load import validate

REF_BATCH = 64


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

    stage: Stage = field(default_factory=lambda: Stage())
    excl: Any = None  # the process's node locks (optbench.run.node_locks.Exclusive)

    @property
    def work(self) -> Path:
        return self.run_dir / "work"

    @classmethod
    def of_job(cls, job: dict, stage: Stage | None = None, excl: Any = None) -> Context:
        """The context of a run's variant job (its ``spec``, ``spec_dir``, ``run_dir``, ``cache_dir`` and
        ``no_cache``), read again from the run's ``work`` folder in another process: the splits and the preparation
        facts as the run wrote them."""
        run_dir = Path(job["run_dir"])
        spec = validate(job["spec"], {}, str(run_dir / "spec.yaml"))
        splits = load_splits_file(run_dir / "work" / "data.npz")
        for items in (splits.train, splits.calibration, splits.eval):
            items.feed = feeds_of(spec.inputs)
        return cls(spec, Path(job["spec_dir"]), run_dir,
                   ArtifactCache(Path(job["cache_dir"]), enabled=not job.get("no_cache")), splits,
                   json.loads((run_dir / "work" / "prepare.json").read_text()), stage or Stage(), excl)

    def sample_batch(self, wanted: int) -> int:
        """The batch of a check or export sample: ``wanted``, or the batch the model fixes (1 without a batch axis)."""
        read = str((self.prepared.get("interpretation") or {}).get("batch", "dynamic"))
        if read.startswith("fixed"):
            return int(read.split()[1])
        return wanted if any(i.batch_axis is not None for i in self.spec.inputs) else 1


class Stage:
    """The step a variant is in, for the row of a variant that fails ("failed at export: ...")."""

    def __init__(self, now: str = "start") -> None:
        self.now = now

    def __call__(self, name: str) -> None:
        self.now = name


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


