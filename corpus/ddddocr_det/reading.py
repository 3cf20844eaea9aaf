"""ddddocr 1.6.1 ``common_det.onnx`` as ``ddddocr/core/detection_engine.py`` reads it: input ``images`` fixed at
[1, 3, 416, 416]; output ``output`` [1, 3549, 6], batch on axis 0: a YOLOX head, one row per anchor of the
52x52, 26x26 and 13x13 grids (strides 8, 16, 32), columns x offset, y offset, log w, log h (in stride units),
objectness and the one class's score (sigmoids in the graph). ``demo_postprocess`` turns the first four into
centre and size in pixels; the score of a box is objectness x class score."""

from __future__ import annotations

import numpy as np

SLOW = True  # about 30-45 s: behind the slow marker (CI runs it)


def yolox_boxes(raw: np.ndarray) -> np.ndarray:
    out = np.array(raw, dtype=np.float32, copy=True)
    start = 0
    for stride in (8, 16, 32):
        n = 416 // stride
        ys, xs = np.divmod(np.arange(n * n), n)  # row-major cells: x varies fastest
        rows = slice(start, start + n * n)
        out[:, rows, 0] = (out[:, rows, 0] + xs) * stride
        out[:, rows, 1] = (out[:, rows, 1] + ys) * stride
        out[:, rows, 2] = np.exp(out[:, rows, 2]) * stride
        out[:, rows, 3] = np.exp(out[:, rows, 3]) * stride
        start += n * n
    return out


OUTPUTS = {
    "output": {"batch_axis": 0, "postprocess": yolox_boxes,
               "task": {"kind": "detection", "format": "yolox", "top_k": 5, "nms_iou": 0.45}},
}
