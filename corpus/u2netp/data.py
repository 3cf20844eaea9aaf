"""Photographs for rembg's u2netp: scikit-image's bundled photos, cropped, flipped and prepared as rembg does.

rembg's BaseSession.normalize: the image as RGB, resized to 320 x 320 with Lanczos, divided by its own maximum,
then ImageNet mean / std per channel, NCHW float32.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png", "motorcycle_left.png",
          "coins.png", "clock_motion.png", "color.png", "ihc.png", "logo.png", "horse.png", "hubble_deep_field.jpg")
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
SIZE = 320


def _root() -> Path:
    import importlib.util

    found = importlib.util.find_spec("skimage")
    if found is None:
        raise RuntimeError("u2netp's photos come from scikit-image: pip install scikit-image")
    return Path(next(iter(found.submodule_search_locations))) / "data"


def _load(path: Path):
    from PIL import Image

    img = Image.open(path)
    if img.mode in ("1", "L", "I", "F"):
        arr = np.asarray(img.convert("L"))
        img = Image.fromarray(np.stack([arr] * 3, -1))
    return img.convert("RGB")


def normalize(img) -> np.ndarray:
    """(3, 320, 320) float32, as rembg's BaseSession.normalize makes it."""
    from PIL import Image

    arr = np.array(img.convert("RGB").resize((SIZE, SIZE), Image.LANCZOS)).astype(np.float64)
    arr = arr / np.max(arr)
    out = np.stack([(arr[:, :, c] - MEAN[c]) / STD[c] for c in range(3)])
    return out.astype(np.float32)


def photos(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``input.1``: (count, 3, 320, 320) float32 crops of the bundled photos."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = _root()
    images = [_load(root / n) for n in PHOTOS if (root / n).exists()]
    out = []
    for i in range(count):
        img = images[(i + int(rng.integers(len(images)))) % len(images)]
        w, h = img.size
        frac = rng.uniform(0.6, 1.0)
        cw, ch = max(16, int(w * frac)), max(16, int(h * frac))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(normalize(crop))
    return {"input.1": np.stack(out)}
