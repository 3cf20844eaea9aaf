"""Text captchas for ddddocr's recogniser: 4 to 6 letters and digits drawn with Debian's DejaVu fonts on a light,
speckled 150x50 background, each character jittered and slightly rotated, a line or two across. Fed as ddddocr
1.6.1's ``OCREngine._preprocess_image`` feeds its default models: resized to height 64 keeping the aspect
(Lanczos; 150x50 -> 192x64), converted to grayscale, scaled to [0, 1], shape (1, 64, 192) per item. No labels:
the model's 8,210-class charset lives in ddddocr's code, and the reads are judged against the reference's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghjkmnpqrstuvwxyz23456789"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSerif-Bold.ttf")
WIDTH, HEIGHT = 150, 50


def _font(name: str, size: int):
    from PIL import ImageFont

    path = FONT_DIR / name
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size=size)


def captcha(rng: np.random.Generator, text: str):
    from PIL import Image, ImageDraw

    paper = tuple(int(v) for v in rng.integers(215, 256, 3))
    img = Image.new("RGB", (WIDTH, HEIGHT), paper)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(30, 80))):
        draw.point((int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))),
                   fill=tuple(int(v) for v in rng.integers(100, 220, 3)))
    font = _font(FONTS[int(rng.integers(len(FONTS)))], int(rng.integers(24, 30)))
    x = int(rng.integers(4, 12))
    step = (WIDTH - x - 10) / len(text)
    for ch in text:
        ink = tuple(int(v) for v in rng.integers(0, 90, 3))
        glyph = Image.new("RGBA", (40, 44), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((6, 2), ch, fill=ink + (255,), font=font)
        glyph = glyph.rotate(float(rng.uniform(-12, 12)), resample=Image.BILINEAR)
        img.paste(glyph, (int(x + rng.uniform(-2, 2)), int(rng.integers(-2, 8))), glyph)
        x += step
    for _ in range(int(rng.integers(1, 3))):
        draw.line([(int(rng.integers(0, WIDTH // 3)), int(rng.integers(8, HEIGHT - 8))),
                   (int(rng.integers(2 * WIDTH // 3, WIDTH)), int(rng.integers(8, HEIGHT - 8)))],
                  fill=tuple(int(v) for v in rng.integers(60, 160, 3)), width=1)
    return img


def captchas(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``input1``: (count, 1, 64, 192) float32 in [0, 1]."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        text = "".join(ALPHABET[int(i)] for i in rng.integers(0, len(ALPHABET), int(rng.integers(4, 7))))
        img = captcha(rng, text)
        img = img.resize((int(img.size[0] * (64 / img.size[1])), 64), Image.LANCZOS).convert("L")
        images.append(np.asarray(img, np.float32)[None] / 255.0)
    return {"input1": np.stack(images)}
