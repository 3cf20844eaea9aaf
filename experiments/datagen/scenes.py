"""Scenes with people for the YOLOv8n example, composed from photographs that ship inside scikit-image.

Backgrounds (coffee, cat, brick, grass, rocket, motorcycle, ...) are cropped and scaled to the model's
size; on each, one to three photographed people are pasted at random scales and places: the astronaut
portrait, the cameraman, and faces from the bundled LFW subset. RGB in [0, 1], (3, size, size).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BACKGROUNDS = ("coffee.png", "chelsea.png", "brick.png", "grass.png", "gravel.png", "rocket.jpg",
               "motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "coins.png", "page.png", "horse.png")


def _photos() -> Path:
    """scikit-image's bundled photographs, read as files (its loaders may try to download others)."""
    import importlib.util

    found = importlib.util.find_spec("skimage")
    if found is None:
        raise RuntimeError("the yolov8n example's scenes need scikit-image's bundled photos: pip install scikit-image")
    return Path(next(iter(found.submodule_search_locations))) / "data"


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8) if img.max() <= 1.0 else img.astype(np.uint8)
    if img.ndim == 2:
        img = np.stack([img] * 3, -1)
    return img[..., :3]


def scenes(count: int, seed: int = 0, size: int = 320) -> dict[str, np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = _photos()
    load = lambda name: Image.fromarray(_rgb(np.asarray(Image.open(root / name))))  # noqa: E731
    backgrounds = [load(n) for n in BACKGROUNDS if (root / n).exists()]
    people = [load("astronaut.png"), load("camera.png")]
    faces = np.load(root / "lfw_subset.npy")
    out = []
    for _ in range(count):
        bg = backgrounds[int(rng.integers(len(backgrounds)))]
        side = int(rng.integers(min(bg.size) // 2, min(bg.size) + 1))
        x0, y0 = int(rng.integers(0, bg.size[0] - side + 1)), int(rng.integers(0, bg.size[1] - side + 1))
        canvas = bg.crop((x0, y0, x0 + side, y0 + side)).resize((size, size), Image.BILINEAR)
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.6:
                person = people[int(rng.integers(len(people)))]
                scale = rng.uniform(0.3, 0.8) * size / max(person.size)
            else:
                person = Image.fromarray(_rgb(faces[int(rng.integers(len(faces)))]))
                scale = rng.uniform(1.5, 4.5)
            w, h = max(8, int(person.size[0] * scale)), max(8, int(person.size[1] * scale))
            piece = person.resize((w, h), Image.BILINEAR)
            if rng.random() < 0.5:
                piece = piece.transpose(Image.FLIP_LEFT_RIGHT)
            canvas.paste(piece, (int(rng.integers(-w // 4, size - w * 3 // 4)), int(rng.integers(-h // 4, size - h // 2))))
        arr = np.asarray(canvas, np.float32) / 255.0
        out.append(arr.transpose(2, 0, 1))
    return {"images": np.stack(out).astype(np.float32)}
