"""A small CNN for scikit-learn's 8x8 digits, trained (seeded, a few seconds on a CPU) on the training split."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class DigitsCNN(nn.Module):
    def __init__(self, width: int = 32, hidden: int = 128) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, width * 2, 3, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width * 2, width * 2, 3, padding=1), nn.BatchNorm2d(width * 2), nn.ReLU(),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(width * 2 * 16, hidden), nn.ReLU(), nn.Linear(hidden, 10))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(image))


def fit(model: nn.Module, images: np.ndarray, labels: np.ndarray, epochs: int = 12, seed: int = 0,
        lr: float = 3e-3) -> nn.Module:
    """Plain supervised training with Adam and light shift augmentation."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(images), torch.from_numpy(labels)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            xb = x[idx]
            shift = int(torch.randint(-1, 2, (1,), generator=g))
            xb = torch.roll(xb, shifts=shift, dims=3)
            loss = nn.functional.cross_entropy(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def build(train=None, seed: int = 0, epochs: int = 12, width: int = 32) -> nn.Module:
    """optbench entrypoint: ``train`` is the spec's training split (disjoint from eval and calibration)."""
    torch.manual_seed(seed)
    model = DigitsCNN(width)
    if train is None:
        raise ValueError("the digits model needs the training split (data.source: digits)")
    return fit(model, train.inputs["image"], train.labels, epochs=epochs, seed=seed)


def build_student(train=None, seed: int = 0) -> nn.Module:
    """An untrained, smaller student for distillation (trained by the distill transform)."""
    torch.manual_seed(seed)
    return DigitsCNN(width=8, hidden=32)
