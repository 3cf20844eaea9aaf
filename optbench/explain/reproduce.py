"""Whether what ``optbench explain`` ran reproduces the row it explains: the graph outputs of the session whose
tensors were compared, on the row's own eval items at its batch and shape, judged against the row's reference by
the code that judged the row; each output's rel. L2 must be within TOLERANCE of the row's. A ranking of a session
that does not reproduce the row is of something else than what made the row: it is said first, and ``optbench
tune`` does not act on it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

TOLERANCE = 0.10  # relative: explain's graph-output rel. L2 against the row's
NOISE = 1e-6      # absolute: rows at fp32's own noise (1e-7 and below) agree within it whatever the relative gap


@dataclass(frozen=True)
class Reproduction:
    outputs: dict[str, tuple[float, float]] = field(default_factory=dict)  # view -> (explained, row) rel. L2
    items: int = 0
    why: str | None = None       # why it could not be checked (the row has no drift, the data is gone, ...)
    kernels: str | None = None   # what exposing tensors changed in the kernels ORT runs (None: nothing)

    @property
    def worst(self) -> tuple[str, float, float, float] | None:
        """(view, explained, row, relative difference) of the view farthest from the row."""
        if not self.outputs:
            return None
        view, (e, r) = max(self.outputs.items(), key=lambda kv: _off(*kv[1]))
        return view, e, r, _off(e, r)

    @property
    def reproduced(self) -> bool:
        return self.why is None and bool(self.outputs) and all(
            abs(e - r) <= max(TOLERANCE * abs(r), NOISE) for e, r in self.outputs.values())

    def sentence(self) -> str:
        if self.why is not None:
            return f"not checked against the row: {self.why}; the ranking may not be of the kernels that made it"
        view, e, r, off = self.worst
        where = f"graph output '{view}' rel. L2 {e:.3g} here, {r:.3g} in the row ({_pct(off)} apart, " \
                f"{self.items} eval items)"
        if self.reproduced:
            return f"reproduces the row: {where}"
        tail = f"; exposing tensors changed ONNX Runtime's kernels ({self.kernels})" if self.kernels else ""
        return (f"explain's emulation differs from the row: {where}, beyond {TOLERANCE:.0%}{tail}; the ranking "
                "below is of what explain ran, not of the kernels that made the row")

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "outputs": {k: list(v) for k, v in self.outputs.items()}}

    @classmethod
    def from_json(cls, d: dict[str, Any] | None) -> Reproduction | None:
        if d is None:
            return None
        return cls({k: (float(v[0]), float(v[1])) for k, v in (d.get("outputs") or {}).items()},
                   int(d.get("items") or 0), d.get("why"), d.get("kernels"))


def _off(e: float, r: float) -> float:
    if not np.isfinite(e) or not np.isfinite(r):
        return 0.0 if (np.isnan(e) and np.isnan(r)) else float("inf")
    return abs(e - r) / max(abs(r), NOISE)


def _pct(x: float) -> str:
    return "inf" if not np.isfinite(x) else f"{x:.0%}" if x >= 0.01 else f"{x:.1%}"


class _Infer:
    """A session as the row's judge calls it: feeds by input name in, outputs by name out."""

    names_outputs = True  # paired with the reference's by name, as the judge pairs a session that names them

    def __init__(self, infer) -> None:
        self.infer = infer


def reproduce(run_dir: Path, row: dict, infer, kernels: str | None = None) -> Reproduction:
    """Run ``infer`` (feeds → the graph outputs, by name) over the row's eval items as the row was judged, and
    compare each output's rel. L2 with the row's."""
    from optbench.run.judge import judge_outputs_of, variant_outputs

    row_views = {k: m["drift_rel_l2"] for k, m in (row.get("outputs") or {}).items()
                 if isinstance(m, dict) and m.get("drift_rel_l2") is not None}
    if not row_views:
        why = f"the row has no graph-output rel. L2 (status {row.get('status')}" + \
              (f": {str(row.get('error')).splitlines()[0][:160]})" if row.get("error") else ")")
        return Reproduction(why=why, kernels=kernels)
    ctx = run_context(run_dir)
    v = variant_of(ctx, row)
    items = ctx.splits.eval.at_shape(ctx.spec.inputs, v.dims)
    try:
        judged = judge_outputs_of(ctx, v, variant_outputs(ctx, v, _Infer(infer), items))
    except (RuntimeError, ValueError) as e:
        return Reproduction(why=f"its outputs could not be judged as the row's were ({str(e).splitlines()[0][:200]})",
                            kernels=kernels)
    mine = {k: m.get("drift_rel_l2") for k, m in judged["outputs"].items()}
    outputs = {k: (float(mine[k]), float(r)) for k, r in row_views.items() if mine.get(k) is not None}
    missing = sorted(set(row_views) - set(outputs))
    if missing:
        return Reproduction(outputs, len(items), f"no rel. L2 for {missing} here", kernels)
    return Reproduction(outputs, len(items), None, kernels)


def run_context(run_dir: Path) -> Any:
    """The run's context as a variant was built in: its spec, data splits, preparation and artifact cache."""
    import json

    import yaml

    from optbench.cache import ArtifactCache
    from optbench.data import feeds_of
    from optbench.errors import RunDirError
    from optbench.run.context import Context, load_splits_file
    from optbench.specfile.load import validate

    work = Path(run_dir) / "work"
    for name in ("prepare.json", "data.npz", "reference.npz"):
        if not (work / name).exists():
            raise RunDirError(f"{run_dir} keeps no work/{name}: its data and reference are gone, nothing to explain")
    prepared = json.loads((work / "prepare.json").read_text())
    spec = validate(yaml.safe_load((Path(run_dir) / "spec.yaml").read_text()), {}, str(Path(run_dir) / "spec.yaml"))
    splits = load_splits_file(work / "data.npz")
    for items in (splits.train, splits.calibration, splits.eval):
        items.feed = feeds_of(spec.inputs)
    cache = ArtifactCache(Path(prepared["model_path"]).parent.parent)
    return Context(spec, Path(prepared.get("spec_dir") or run_dir), Path(run_dir), cache, splits, prepared)


def variant_of(ctx: Any, row: dict) -> Any:
    """The planned variant a row was made from (its backend's options as the spec gives them)."""
    from optbench.backends import get_backend
    from optbench.plan import Variant

    cls = get_backend(row.get("backend_name") or row["backend"])
    spec_entry = next((b for b in ctx.spec.backends if b.key == row["backend"]), None)
    options = cls.Options.model_validate(spec_entry.options if spec_entry else {})
    return Variant(id=row["variant_id"], backend=row["backend"], backend_name=cls.name,
                   options=options.model_dump(mode="json"), device=row["device"], precision=row["precision"],
                   transform=row.get("transform") or "none", batch_size=int(row["batch_size"]),
                   dims=dict(row.get("shape") or {}), int8=row.get("int8"), fp16=row.get("fp16"))
