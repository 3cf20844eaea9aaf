"""Text lines for PP-OCRv4 rec: short phrases rendered with Debian's DejaVu / Liberation fonts.

Each line is drawn dark on light paper, resized to height 48 keeping its aspect ratio, and normalised the way
rapidocr's TextRecognizer does ((x / 255 - 0.5) / 0.5, the right padded with zeros after normalising).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = ("parcel label weight route depot crate pallet lorry harbour quay berth manifest batch serial "
         "model version kitchen garden window door meeting room floor level exit entrance lift stairs "
         "north east west central library museum school bakery pharmacy hotel").split()
FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
         "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
         "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
         "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
         "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf")
HEIGHT = 48


def _fonts(size: int) -> list:
    from PIL import ImageFont

    found = [p for p in FONTS if Path(p).exists()]
    return [ImageFont.truetype(p, size) for p in found] or [ImageFont.load_default(size=size)]


def _phrase(rng: np.random.Generator) -> str:
    words = [str(rng.choice(WORDS)) for _ in range(int(rng.integers(1, 3)))]
    if rng.random() < 0.6:
        words.append(f"{int(rng.integers(1, 999))}")
    text = " ".join(words)
    return text.upper() if rng.random() < 0.25 else text.capitalize() if rng.random() < 0.5 else text


def text_lines(count: int, seed: int = 0, width: int = 320) -> dict[str, np.ndarray]:
    """``x``: (count, 3, 48, width) float32 BGR lines; ``__labels__``: the strings drawn."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    fonts = _fonts(32)
    images, labels = [], []
    while len(images) < count:
        text, font = _phrase(rng), fonts[int(rng.integers(len(fonts)))]
        left, top, right, bottom = font.getbbox(text)
        w, h = right - left + 10, bottom - top + 10
        new_w = round(w * HEIGHT / h)
        if new_w > width:
            continue
        paper = tuple(int(v) for v in rng.integers(205, 256, 3))
        ink = tuple(int(v) for v in rng.integers(0, 70, 3))
        img = Image.new("RGB", (w, h), paper)
        ImageDraw.Draw(img).text((5 - left, 5 - top), text, fill=ink, font=font)
        line = np.asarray(img.resize((new_w, HEIGHT), Image.BILINEAR), np.float32)[:, :, ::-1]  # BGR
        line = np.clip(line + rng.normal(0, 3, line.shape), 0, 255)
        canvas = np.zeros((HEIGHT, width, 3), np.float32)
        canvas[:, :new_w] = (line / 255.0 - 0.5) / 0.5
        images.append(canvas.transpose(2, 0, 1))
        labels.append(text)
    return {"x": np.stack(images).astype(np.float32), "__labels__": np.asarray(labels)}
