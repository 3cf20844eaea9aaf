"""Captchas for captcha-whisperer's CRNN: 4 to 6 digits and capital letters drawn with Debian's DejaVu fonts on a
tinted, noisy background, each character jittered and rotated, crossed by a few lines and speckles, then fed the
way the package's own ``preprocess`` does: 160x60, BGR channel order, values left in 0..255 (no scaling).
``__labels__`` holds the strings drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np

ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono-Bold.ttf",
         "DejaVuSansCondensed-Bold.ttf", "DejaVuSerif.ttf")
WIDTH, HEIGHT = 160, 60


def _font(name: str, size: int):
    from PIL import ImageFont

    path = FONT_DIR / name
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size=size)


def captcha(rng: np.random.Generator, text: str):
    from PIL import Image, ImageDraw, ImageFilter

    bg = tuple(int(v) for v in rng.integers(190, 256, 3))
    img = Image.new("RGB", (WIDTH, HEIGHT), bg)
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(20, 60))):  # speckles
        x, y = int(rng.integers(0, WIDTH)), int(rng.integers(0, HEIGHT))
        draw.point((x, y), fill=tuple(int(v) for v in rng.integers(60, 200, 3)))
    x = int(rng.integers(4, 14))
    step = (WIDTH - x - 8) / len(text)
    for ch in text:
        size = int(rng.integers(26, 36))
        font = _font(FONTS[int(rng.integers(len(FONTS)))], size)
        ink = tuple(int(v) for v in rng.integers(0, 110, 3))
        glyph = Image.new("RGBA", (size + 12, size + 16), (0, 0, 0, 0))
        ImageDraw.Draw(glyph).text((6, 2), ch, fill=ink + (255,), font=font)
        glyph = glyph.rotate(float(rng.uniform(-25, 25)), resample=Image.BILINEAR, expand=True)
        y = int(rng.integers(-4, max(-3, HEIGHT - glyph.size[1] + 4)))
        img.paste(glyph, (int(x + rng.uniform(-3, 3)), y), glyph)
        x += step
    for _ in range(int(rng.integers(1, 4))):  # strike-through lines
        pts = [(int(rng.integers(0, WIDTH // 3)), int(rng.integers(5, HEIGHT - 5))),
               (int(rng.integers(2 * WIDTH // 3, WIDTH)), int(rng.integers(5, HEIGHT - 5)))]
        draw.line(pts, fill=tuple(int(v) for v in rng.integers(0, 140, 3)), width=int(rng.integers(1, 3)))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
    return img


def captchas(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``image``: (count, 3, 60, 160) float32 BGR in 0..255; ``__labels__``: the strings."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(count):
        text = "".join(ALPHABET[int(i)] for i in rng.integers(0, len(ALPHABET), int(rng.integers(4, 7))))
        rgb = np.asarray(captcha(rng, text).convert("RGB"), np.float32)
        images.append(np.ascontiguousarray(rgb[:, :, ::-1].transpose(2, 0, 1)))  # RGB -> BGR, HWC -> CHW
        labels.append(text)
    return {"image": np.stack(images), "__labels__": np.asarray(labels)}
