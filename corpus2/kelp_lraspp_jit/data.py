"""Drone orthomosaics of a kelp bed for kelp-o-matic's kelp-presence model, cut as kelp-o-matic 0.5.4 cuts them.

``GeotiffSegmentation`` reads an RGB(A) uint8 image in square crops with context padding around each
(``GeotiffReader``: crops of ``crop_size`` on a grid from the top left, ``padding`` pixels of the neighbouring image
on every side, boundless reads filled with the nodata value 0), drops crops whose unpadded middle is all 0 or 255
(``_should_keep``: ``np.any(clip(img, 0, 255) % 255)``), and turns each into a tensor with torchvision's
``ToTensor`` (HWC uint8 -> CHW float in [0, 1]), the first three bands, and ``Normalize`` with ImageNet's mean and
std. The same is done here in numpy (rasterio and torchvision are not needed to cut a numpy image). The CLI's
``--crop-size`` and ``--padding`` are 128 and 64 here (the defaults, 512 and 256, make 1024-pixel inputs, slow on
two cores for no gain in what is checked): inputs are (3, 256, 256).

The scenes are made, not photographed: dark green-blue water with swell and ripples, and floating canopy patches
of brown-olive kelp (smoothed noise thresholded to irregular beds), as bull-kelp canopy looks from a drone at low
tide; the model finds the planted canopy at IoU about 0.85. ``__labels__`` is not given: the task compares the
variant's kelp map with the reference's.
"""

from __future__ import annotations

import numpy as np

CROP, PADDING, SIZE = 128, 64, 512
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def _field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(rng.normal(size=shape), sigma)


def orthomosaic(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """(size, size, 3) uint8: water, swell, ripples and kelp canopy beds."""
    from scipy.ndimage import gaussian_filter

    water = np.array([18, 52, 70], np.float32) + rng.uniform(-8, 8, 3)
    img = np.ones((size, size, 3), np.float32) * water
    img += _field(rng, (size, size), 30)[..., None] * 300 * np.array([0.5, 0.8, 1.0], np.float32)  # swell
    img += _field(rng, (size, size), 1.5)[..., None] * 40  # ripples
    kelp = _field(rng, (size, size), rng.uniform(8, 20))
    beds = kelp > np.quantile(kelp, rng.uniform(0.6, 0.85))
    tone = np.array([105, 85, 35], np.float32) + rng.uniform(-15, 15, 3)
    texture = 1 + _field(rng, (size, size), 2)[..., None] * 4
    alpha = gaussian_filter(beds.astype(np.float32), 1.5)[..., None]
    img = img * (1 - alpha) + tone * texture * alpha
    return np.clip(img, 0, 255).astype(np.uint8)


def crops(img: np.ndarray, crop: int = CROP, padding: int = PADDING) -> list[np.ndarray]:
    """GeotiffReader's crops in its order (rows of the grid, then columns), padded with the fill value 0 where
    the window leaves the image, those _should_keep keeps."""
    h, w = img.shape[:2]
    padded = np.zeros((h + 2 * padding + crop, w + 2 * padding + crop, img.shape[2]), img.dtype)
    padded[padding:padding + h, padding:padding + w] = img
    out = []
    for y0 in range(0, h, crop):
        for x0 in range(0, w, crop):
            window = padded[y0:y0 + crop + 2 * padding, x0:x0 + crop + 2 * padding]
            middle = window[padding:padding + crop, padding:padding + crop]
            if np.any(np.clip(middle, 0, 255) % 255):
                out.append(window)
    return out


def to_tensor(window: np.ndarray) -> np.ndarray:
    """ToTensor, the first three bands, Normalize(ImageNet): (3, H, W) float32."""
    x = window.astype(np.float32).transpose(2, 0, 1)[:3] / 255.0
    return ((x - MEAN[:, None, None]) / STD[:, None, None]).astype(np.float32)


def tiles(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``x``: (count, 3, 256, 256) float32 crops of as many orthomosaics as it takes, in reading order."""
    rng = np.random.default_rng(seed)
    found: list[np.ndarray] = []
    while len(found) < count:
        found.extend(crops(orthomosaic(rng)))
    return {"x": np.stack([to_tensor(w) for w in found[:count]])}
