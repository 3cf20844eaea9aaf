"""ddddocr's YOLOX head decoded as ddddocr's ``DetectionEngine.demo_postprocess`` does: per anchor of the stride-8,
16 and 32 grids of a 416x416 input, centre = (offset + grid cell) x stride, size = exp(log size) x stride;
objectness and class score are already sigmoids in the graph."""

from __future__ import annotations

import numpy as np


def _grid(size: int = 416) -> tuple[np.ndarray, np.ndarray]:
    cells, strides = [], []
    for stride in (8, 16, 32):
        n = size // stride
        xv, yv = np.meshgrid(np.arange(n), np.arange(n))
        cells.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((n * n, 1), stride))
    return np.concatenate(cells).astype(np.float32), np.concatenate(strides).astype(np.float32)


def decode(output: np.ndarray) -> np.ndarray:
    """(N, 3549, 6) raw head -> (N, 3549, 6) [cx, cy, w, h, objectness, class score] in input pixels."""
    cells, strides = _grid()
    out = output.astype(np.float32).copy()
    out[..., :2] = (out[..., :2] + cells) * strides
    out[..., 2:4] = np.exp(out[..., 2:4]) * strides
    return out
