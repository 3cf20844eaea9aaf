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

    from optbench.explain.reproduce import reproduce, run_context

    ctx = run_context(run_dir)
    if "spec_dir" not in ctx.prepared:
        raise OptbenchError(f"{run_dir} was prepared before optbench explain recorded the spec's folder; run it "
                            "again to explain a torch-side variant")
    reference = _load_base(ctx)
    session, own = _variant_session(ctx, row)
    try:  # the session as the row ran it, before any hook: its outputs on the row's items against the row's
        reproduction = reproduce(run_dir, row, session.infer)
    except BaseException:
        session.close()
        raise
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
    if own:
        notes.insert(0, f"explained on the module {row['backend']} starts from (its own build of it is not "
                        "hooked); the check against the row says how close that comes")
    return Localization("torch fp32 reference module", f"{row['variant_id']} ({row['backend']})", items, nodes, {},
                        [n for n, _ in var_calls.order if acc_out.error(n) is None], notes,
                        [n for n, _ in ref_calls.order], reproduction)


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


def _load_base(ctx: Any) -> Any:
    from optbench.run.artifacts import load_base_module

    return load_base_module(ctx)


def _variant_session(ctx: Any, row: dict) -> tuple[Any, bool]:
    """The variant's module as its backend built it (the cast, autocast, layout it ran with; see
    :meth:`optbench.backends.base.Backend.explain_build`), and whether the backend builds another one to hook."""
    from optbench.backends import Artifact, get_backend
    from optbench.backends.base import Backend
    from optbench.explain.reproduce import variant_of
    from optbench.run.artifacts import transformed_module

    v = variant_of(ctx, row)
    cls = get_backend(v.backend_name)
    module, _ = transformed_module(ctx, v)
    artifact = Artifact(module=module, inputs=ctx.spec.inputs)
    artifact.sample = next(ctx.splits.eval.at_shape(ctx.spec.inputs, v.dims).batches(v.batch_size))[0]
    backend = cls(cls.Options.model_validate(v.options))
    own = type(backend).explain_build is not Backend.explain_build  # hooks on another module than the row ran
    return backend.explain_build(artifact, v.target), own
