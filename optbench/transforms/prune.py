"""Pruning: structured L1 channel pruning (torch-pruning: a genuinely smaller dense model) or
unstructured magnitude sparsity (same shapes, zeros; no speed-up claimed), with optional fine-tune."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from optbench.transforms import count_params, transform
from optbench.transforms.train import train_against


def _example(ctx: Any) -> tuple:
    import torch

    items = ctx.splits.eval
    return tuple(torch.from_numpy(np.ascontiguousarray(v[:2])) for v in items.inputs.values())


def _output_layers(model: Any) -> list:
    """The last Linear/Conv layer: its output channels are the model's outputs and must stay."""
    import torch

    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    return layers[-1:]


@transform("prune")
def prune(module: Any, s: Any, ctx: Any) -> tuple[Any, dict]:
    teacher = module.eval()
    model = copy.deepcopy(module)
    before = count_params(model)
    facts: dict[str, Any] = {"prune_method": s.method, "prune_amount": s.amount, "params_before": before}
    if s.method == "l1-structured":
        _structured(model, s.amount, ctx)
    else:
        _magnitude(model, s.amount)
    if s.finetune_epochs:
        masks = _masks(model) if s.method == "magnitude" else None
        train_against(model, teacher, ctx.splits.train, epochs=s.finetune_epochs, lr=1e-3, seed=ctx.spec.seed,
                      after_step=(lambda: _apply_masks(masks)) if masks else None)
        facts["finetune_epochs"] = s.finetune_epochs
    facts["params"] = count_params(model)
    facts["sparsity"] = _sparsity(model)
    return model.eval(), facts


def _structured(model: Any, amount: float, ctx: Any) -> None:
    import torch_pruning as tp

    example = _example(ctx)
    imp = tp.importance.MagnitudeImportance(p=1)
    pruner = tp.pruner.MetaPruner(model, example_inputs=example, importance=imp, pruning_ratio=amount,
                                  ignored_layers=_output_layers(model))
    pruner.step()


def _magnitude(model: Any, amount: float) -> None:
    import torch
    from torch.nn.utils import prune as tprune

    params = [(m, "weight") for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=amount)
    for m, name in params:
        tprune.remove(m, name)


def _masks(model: Any) -> list:
    import torch

    return [(m.weight, (m.weight != 0).float()) for m in model.modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def _apply_masks(masks: list) -> None:
    import torch

    with torch.no_grad():
        for w, mask in masks:
            w.mul_(mask)


def _sparsity(model: Any) -> float:
    import torch

    weights = [m.weight for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    total = sum(w.numel() for w in weights)
    return float(sum((w == 0).sum().item() for w in weights) / total) if total else 0.0
