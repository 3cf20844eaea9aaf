"""A module that keeps state between calls, the way streaming VAD and ASR modules do: a buffer each forward
updates and a ``reset_states()`` method that clears it. Fed the same batch twice it answers twice differently."""

from __future__ import annotations

from pathlib import Path

import torch


class Accumulating(torch.nn.Module):
    """Digits-shaped input [batch, 1, 8, 8] -> 4 scores, offset by how many calls the module has seen since its
    last reset (items stay independent of each other: a reset makes it a function of its input)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Linear(64, 4)
        self.register_buffer("state", torch.zeros(1, 4))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        y = self.fc(image.flatten(1))
        self.state.add_(1.0)
        return y + self.state

    @torch.jit.export
    def reset_states(self) -> None:
        self.state.zero_()


def build() -> torch.nn.Module:
    """The python entrypoint: an eager module."""
    return Accumulating().eval()


def torchscript_file(path: Path) -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, and still what models ship
        torch.jit.script(Accumulating().eval()).save(str(path))
    return path


def clear_state(module: torch.nn.Module) -> None:
    """A reset hook (``model.reset: "file.py:clear_state"``): the module is handed over, the hook clears it."""
    module.state.zero_()
