"""Pooling of MiniLM's token states for judging."""

from __future__ import annotations

import numpy as np


def mean_pool(states: np.ndarray) -> np.ndarray:
    """(N, seq, 384) -> (N, 384): the mean over the sequence (the items hold no padding, so this is
    sentence-transformers' masked mean pooling)."""
    return states.astype(np.float64).mean(axis=1)
