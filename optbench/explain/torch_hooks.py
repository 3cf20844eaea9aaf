"""Drift localisation for a torch-side variant (a torch backend's fp16/bf16 cast, autocast, a transform that keeps
the module names): forward hooks on every leaf module of the reference module and of the variant's module (built by
its backend, as the variant ran), their inputs and outputs compared by module name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optbench.errors import OptbenchError
from optbench.explain.localize import Localization, NodeDrift, _Accumulator


def explain_module(run_dir: Path, row: dict, batches: list) -> Localization:
    import torch

    ctx = _context(run_dir)
    reference = _load_base(ctx)
    session = _variant_session(ctx, row)
    ref_calls, var_calls = _Recorder(reference), _Recorder(session.module)
    acc_in, acc_out = _Accumulator(), _Accumulator()
    items = 0
    try:
        for feeds, real in batches:
            with torch.inference_mode():
                reference(*(torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()))
            session.infer(feeds)
            for name, (r_in, r_out) in ref_calls.take().items():
                v_in, v_out = var_calls.seen.get(name, (None, None))
                if v_out is not None:
                    acc_out.add(name, v_out, r_out)
                    if v_in is not None and r_in is not None:
                        acc_in.add(name, v_in, r_in)
            var_calls.take()
            items += real
    finally:
        ref_calls.close()
        var_calls.close()
        session.close()
    nodes = []
    for i, (name, kind) in enumerate(ref_calls.order):
        err = acc_out.error(name)
        if err is None:
            continue
        e_in = acc_in.error(name)
        nodes.append(NodeDrift(name, kind, name, i + 1, i, err, e_in, err - (e_in or 0.0),
                               name.rsplit(".", 1)[0] if "." in name else name))
    notes = ["torch forward hooks on leaf modules; a module whose output shape differs from the reference's (a "
             "pruned layer) is not compared"]
    return Localization("torch fp32 reference module", f"{row['variant_id']} ({row['backend']})", items, nodes, {},
                        [n for n, _ in var_calls.order if acc_out.error(n) is None], notes,
                        [n for n, _ in ref_calls.order])


class _Recorder:
    """The first floating input and output of every leaf module's call, as float32 numpy, by module name."""

    def __init__(self, module: Any) -> None:
        self.seen: dict[str, tuple] = {}
        self.order: list[tuple[str, str]] = []
        self.known: set[str] = set()
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in module.named_modules()
                        if name and not list(m.children())]

    def _hook(self, name: str):
        def hook(module, args, output) -> None:
            if name not in self.known:
                self.known.add(name)
                self.order.append((name, type(module).__name__))
            self.seen[name] = (_first_float(args), _first_float(output))
        return hook

    def take(self) -> dict[str, tuple]:
        out, self.seen = self.seen, {}
        return out

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _first_float(x: Any) -> np.ndarray | None:
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy() if x.is_floating_point() else None
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        for item in x:
            found = _first_float(item)
            if found is not None:
                return found
    return None


def _context(run_dir: Path) -> Any:
    import json

    import yaml

    from optbench.cache import ArtifactCache
    from optbench.data import feeds_of
    from optbench.run.context import Context, load_splits_file
    from optbench.specfile.load import validate

    prepared = json.loads((run_dir / "work" / "prepare.json").read_text())
    if "spec_dir" not in prepared:
        raise OptbenchError(f"{run_dir} was prepared before optbench explain recorded the spec's folder; run it "
                            "again to explain a torch-side variant")
    spec = validate(yaml.safe_load((run_dir / "spec.yaml").read_text()), {}, str(run_dir / "spec.yaml"))
    splits = load_splits_file(run_dir / "work" / "data.npz")
    for items in (splits.train, splits.calibration, splits.eval):
        items.feed = feeds_of(spec.inputs)
    cache = ArtifactCache(Path(prepared["model_path"]).parent.parent)
    return Context(spec, Path(prepared["spec_dir"]), run_dir, cache, splits, prepared)


def _load_base(ctx: Any) -> Any:
    from optbench.run.artifacts import load_base_module

    return load_base_module(ctx)


def _variant_session(ctx: Any, row: dict) -> Any:
    """The variant's module as its backend built it (the cast, autocast, layout it ran with)."""
    from optbench.backends import Artifact, get_backend
    from optbench.plan import Variant
    from optbench.run.artifacts import transformed_module

    cls = get_backend(row.get("backend_name") or row["backend"])
    spec_entry = next((b for b in ctx.spec.backends if b.key == row["backend"]), None)
    options = cls.Options.model_validate(spec_entry.options if spec_entry else {})
    v = Variant(id=row["variant_id"], backend=row["backend"], backend_name=cls.name,
                options=options.model_dump(mode="json"), device=row["device"], precision=row["precision"],
                transform=row.get("transform") or "none", batch_size=int(row["batch_size"]),
                dims=dict(row.get("shape") or {}), int8=row.get("int8"))
    module, _ = transformed_module(ctx, v)
    return cls(options).build(Artifact(module=module, inputs=ctx.spec.inputs), v.target)
