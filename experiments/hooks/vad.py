"""A user metric for the silero-vad example (spec: `task: {kind: custom, metric: ...}`).

The model's output is a speech probability per 32 ms chunk; what matters downstream is the decision at
silero's default threshold. The metric returns the share of chunks whose decision matches the reference's,
and the largest probability shift near the threshold (where a shift flips decisions).
"""

import numpy as np

THRESHOLD = 0.5


def speech_agreement(out: np.ndarray, ref: np.ndarray, labels) -> dict[str, float]:
    o, r = out.reshape(len(out)), ref.reshape(len(ref))
    near = np.abs(r - THRESHOLD) < 0.2
    return {
        "speech_agreement": float(((o > THRESHOLD) == (r > THRESHOLD)).mean()),
        "shift_near_threshold": float(np.abs(o - r)[near].max()) if near.any() else 0.0,
    }
