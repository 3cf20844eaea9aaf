"""What a torch module's call returns, read the same way wherever a module is run (the torch backends, training
for pruning and distillation)."""

from __future__ import annotations

from typing import Any


def first_tensor(out: Any):
    """The first tensor of a model output (tensor, tuple, dict or ModelOutput)."""
    import torch

    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, dict):
        out = list(out.values())
    if isinstance(out, (list, tuple)) and out:
        return first_tensor(out[0])
    raise TypeError(f"model output of type {type(out).__name__} holds no tensor")
