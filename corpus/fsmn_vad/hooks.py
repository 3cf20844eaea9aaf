"""Post-processing of the FSMN VAD's scores for judging, as funasr's E2EVadModel reads them."""

from __future__ import annotations

import numpy as np


def speech_probability(scores: np.ndarray) -> np.ndarray:
    """(N, T, 248) per-frame scores -> (N, T) speech probability: 1 minus the silence pdf's score (pdf 0).

    E2EVadModel calls a frame speech where this reaches the silence score plus speech_noise_thres (0.6),
    i.e. where it is at least 0.8.
    """
    return 1.0 - scores[..., 0]
