"""Rendered text for the PP-OCR examples: text lines (recognition) and pages (detection).

Words are drawn from a fixed vocabulary with Debian's DejaVu / Liberation fonts (PIL's own font where
they are missing), black-ish on light paper with a little noise, and normalised the way PP-OCR's own
pre-processing does: recognition (x/255 - 0.5) / 0.5 at height 48, detection ImageNet mean/std.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = ("invoice total amount due date order number shipping address customer service account balance payment "
         "received thank you reference code station platform departure arrival ticket price tax receipt store "
         "open hours monday friday street avenue north south river bridge market coffee bread milk apples").split()
FONT_DIRS = ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype/liberation")
FONT_NAMES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "LiberationSans-Regular.ttf",
              "LiberationSerif-Regular.ttf", "LiberationMono-Regular.ttf")


def _fonts(size: int) -> list:
    from PIL import ImageFont

    found = [Path(d) / n for d in FONT_DIRS for n in FONT_NAMES if (Path(d) / n).exists()]
    if found:
        return [ImageFont.truetype(str(p), size) for p in found]
    return [ImageFont.load_default(size=size)]


def _phrase(rng: np.random.Generator) -> str:
    words = [str(rng.choice(WORDS)) for _ in range(int(rng.integers(1, 4)))]
    if rng.random() < 0.5:
        words.append(str(int(rng.integers(1, 9999))))
    text = " ".join(words)
    return text.capitalize() if rng.random() < 0.5 else text


def text_lines(count: int, seed: int = 0, width: int = 320) -> dict[str, np.ndarray]:
    """``x``: (count, 3, 48, width) float32 text lines; ``__labels__``: the strings drawn."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    fonts = _fonts(30)
    images, labels = [], []
    while len(images) < count:
        text, font = _phrase(rng), fonts[int(rng.integers(len(fonts)))]
        left, top, right, bottom = font.getbbox(text)
        w, h = right - left + 8, bottom - top + 8
        paper = int(rng.integers(215, 256))
        img = Image.new("RGB", (w, h), (paper, paper, paper))
        ink = int(rng.integers(0, 60))
        ImageDraw.Draw(img).text((4 - left, 4 - top), text, fill=(ink, ink, ink), font=font)
        new_w = min(width, max(1, round(w * 48 / h)))
        if w * 48 / h > width:  # too long for the model's width at this height: draw another
            continue
        line = np.asarray(img.resize((new_w, 48), Image.BILINEAR), np.float32)
        line = line + rng.normal(0, 4, line.shape)
        canvas = np.full((48, width, 3), 0.0, np.float32)  # PP-OCR pads the right with zeros after normalising
        canvas[:, :new_w] = (np.clip(line, 0, 255) / 255.0 - 0.5) / 0.5
        images.append(canvas.transpose(2, 0, 1))
        labels.append(text)
    return {"x": np.stack(images).astype(np.float32), "__labels__": np.asarray(labels)}


def pages(count: int, seed: int = 0, size: int = 320) -> dict[str, np.ndarray]:
    """``x``: (count, 3, size, size) float32 pages holding several lines of text at random places."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    fonts = {s: _fonts(s) for s in (16, 20, 26)}
    out = []
    for _ in range(count):
        paper = tuple(int(v) for v in rng.integers(200, 256, 3))
        img = Image.new("RGB", (size, size), paper)
        draw = ImageDraw.Draw(img)
        y = int(rng.integers(4, 30))
        while y < size - 30:
            s = int(rng.choice(list(fonts)))
            font = fonts[s][int(rng.integers(len(fonts[s])))]
            ink = tuple(int(v) for v in rng.integers(0, 90, 3))
            draw.text((int(rng.integers(4, 80)), y), _phrase(rng), fill=ink, font=font)
            y += s + int(rng.integers(8, 40))
        arr = np.asarray(img, np.float32) / 255.0 + rng.normal(0, 0.01, (size, size, 3))
        out.append(((arr - mean) / std).transpose(2, 0, 1))
    return {"x": np.stack(out).astype(np.float32)}
