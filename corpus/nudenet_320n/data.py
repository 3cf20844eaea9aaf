"""Scenes with people for nudenet's YOLOv8n detector, composed from the photographs bundled with scikit-image
(as experiments/datagen/scenes.py composes them): a background (coffee, cat, brick, grass, rocket, motorcycle, ...)
cropped square and scaled to 320x320, with one to three people pasted at random scales and places (the astronaut
portrait, the cameraman, faces of the bundled LFW subset). Fed as nudenet does: RGB scaled to [0, 1], CHW."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SIZE = 320
BACKGROUNDS = ("coffee.png", "chelsea.png", "brick.png", "grass.png", "gravel.png", "rocket.jpg",
               "motorcycle_left.png", "hubble_deep_field.jpg", "coins.png", "page.png", "horse.png")


def _photos() -> Path:
    found = importlib.util.find_spec("skimage")
    if found is None:
        raise RuntimeError("nudenet_320n's scenes need scikit-image's bundled photos: pip install scikit-image")
    return Path(next(iter(found.submodule_search_locations))) / "data"


def _rgb(img):
    from PIL import Image

    arr = np.asarray(img)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0, 1) * 255).astype(np.uint8) if arr.max() <= 1.0 else arr.astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, -1)
    return Image.fromarray(np.ascontiguousarray(arr[..., :3]))


def scenes(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``images``: (count, 3, 320, 320) float32 RGB in [0, 1]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = _photos()
    backgrounds = [_rgb(Image.open(root / n)) for n in BACKGROUNDS if (root / n).exists()]
    people = [_rgb(Image.open(root / "astronaut.png")), _rgb(Image.open(root / "camera.png"))]
    faces = np.load(root / "lfw_subset.npy")
    out = np.empty((count, 3, SIZE, SIZE), np.float32)
    for i in range(count):
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        side = int(rng.integers(min(bg.size) // 2, min(bg.size) + 1))
        x0, y0 = int(rng.integers(0, bg.size[0] - side + 1)), int(rng.integers(0, bg.size[1] - side + 1))
        canvas = bg.crop((x0, y0, x0 + side, y0 + side)).resize((SIZE, SIZE), Image.BILINEAR)
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.6:
                person = people[int(rng.integers(len(people)))]
                scale = rng.uniform(0.3, 0.8) * SIZE / max(person.size)
            else:
                person = _rgb(faces[int(rng.integers(len(faces)))])
                scale = rng.uniform(1.5, 4.5)
            w, h = max(8, int(person.size[0] * scale)), max(8, int(person.size[1] * scale))
            piece = person.resize((w, h), Image.BILINEAR)
            if rng.random() < 0.5:
                piece = piece.transpose(Image.FLIP_LEFT_RIGHT)
            canvas.paste(piece, (int(rng.integers(-w // 4, SIZE - w * 3 // 4)),
                                 int(rng.integers(-h // 4, SIZE - h // 2))))
        out[i] = np.asarray(canvas, np.float32).transpose(2, 0, 1) / 255.0
    return {"images": out}
