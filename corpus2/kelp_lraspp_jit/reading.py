"""kelp-o-matic 0.5.4 ``data/LRASPP_MobileNetV3_kelp_presence_jit_miou=0.8023.pt``: a LR-ASPP MobileNetV3-Large
semantic segmentation network as TorchScript, read as kelp-o-matic's ``KelpPresenceSegmentationModel``:
``model.forward(x)`` with x (N, 3, H, W) float32 (ToTensor, ImageNet Normalize), returning logits (N, 2, H, W)
(0: background, 1: kelp) upsampled to the input size; a pixel is kelp where class 1 is the argmax
(``torch.argmax(logits, dim=1)``), i.e. where its softmax probability exceeds 0.5. Batch on axis 0. Stateless."""

from __future__ import annotations

import numpy as np


def kelp_probability(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    return (1.0 / (1.0 + np.exp(x[:, 0] - x[:, 1]))).astype(np.float32)


OUTPUTS = {
    "output": {"batch_axis": 0, "postprocess": kelp_probability, "task": {"kind": "dense", "threshold": 0.5}},
}
