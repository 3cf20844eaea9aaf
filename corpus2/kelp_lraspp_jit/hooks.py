"""kelp-o-matic reads the logits as ``torch.argmax(logits, dim=1)`` (1: kelp). As a map to threshold: the softmax
probability of class 1, which exceeds 0.5 exactly where class 1 is the argmax."""

from __future__ import annotations

import numpy as np


def kelp_probability(logits: np.ndarray) -> np.ndarray:
    """(N, 2, H, W) logits -> (N, H, W) P(kelp)."""
    x = logits.astype(np.float64)
    return (1.0 / (1.0 + np.exp(x[:, 0] - x[:, 1]))).astype(np.float32)
