"""Click captchas for ddddocr's detector: a photograph from scikit-image's bundled images, cropped to a captcha's
size (about 340x220), with 3 to 5 characters and symbols drawn on it in Debian's DejaVu fonts at random sizes,
colours and angles. Fed as ddddocr's ``DetectionEngine.preproc`` feeds it: BGR, scaled to fit 416x416 keeping the
aspect, placed top-left on a canvas of 114 grey, values left in 0..255. ``__labels__``: the glyph boxes in the
416x416 frame, (N, 5, 5) [class 0, x1, y1, x2, y2], padded with -1."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SIZE = 416
PHOTOS = ("coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "horse.png",
          "brick.png", "grass.png", "gravel.png", "hubble_deep_field.jpg", "coins.png", "retina.jpg")
GLYPHS = "ABDEFGHKMNPQRSTWXYZ3456789#&@%?\u2605\u2660\u2663\u2665\u263a\u266b\u2602\u2708\u2622\u262f"
FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSans.ttf", "DejaVuSansCondensed-Bold.ttf")
MAX_GLYPHS = 5


def _photo_dir() -> Path:
    found = importlib.util.find_spec("skimage")
    if found is None:
        raise RuntimeError("ddddocr_det's captchas need scikit-image's bundled photos: pip install scikit-image")
    return Path(next(iter(found.submodule_search_locations))) / "data"


def _font(name: str, size: int):
    from PIL import ImageFont

    path = FONT_DIR / name
    return ImageFont.truetype(str(path), size) if path.exists() else ImageFont.load_default(size=size)


def click_captcha(rng: np.random.Generator, photo) -> tuple:
    """One captcha (PIL RGB image) and its glyph boxes in its own pixels."""
    from PIL import Image, ImageDraw

    w, h = int(rng.integers(300, 380)), int(rng.integers(190, 250))
    scale = max(w / photo.size[0], h / photo.size[1]) * rng.uniform(1.0, 1.6)
    big = photo.resize((max(w, int(photo.size[0] * scale)), max(h, int(photo.size[1] * scale))), Image.BILINEAR)
    x0, y0 = int(rng.integers(0, big.size[0] - w + 1)), int(rng.integers(0, big.size[1] - h + 1))
    img = big.crop((x0, y0, x0 + w, y0 + h))
    boxes = []
    for _ in range(int(rng.integers(3, MAX_GLYPHS + 1))):
        size = int(rng.integers(28, 46))
        font = _font(FONTS[int(rng.integers(len(FONTS)))], size)
        ch = GLYPHS[int(rng.integers(len(GLYPHS)))]
        ink = tuple(int(v) for v in rng.integers(0, 256, 3))
        glyph = Image.new("RGBA", (size * 2, size * 2), (0, 0, 0, 0))
        draw = ImageDraw.Draw(glyph)
        draw.text((size // 2, size // 3), ch, fill=ink + (255,), font=font, stroke_width=1,
                  stroke_fill=tuple(255 - v for v in ink) + (255,))
        glyph = glyph.rotate(float(rng.uniform(-40, 40)), resample=Image.BILINEAR)
        bbox = glyph.getbbox()
        if bbox is None:
            continue
        glyph = glyph.crop(bbox)
        for _ in range(20):  # a place that does not overlap the glyphs already drawn
            px, py = int(rng.integers(0, w - glyph.size[0])), int(rng.integers(0, h - glyph.size[1]))
            box = (px, py, px + glyph.size[0], py + glyph.size[1])
            if all(box[2] <= b[0] or box[0] >= b[2] or box[3] <= b[1] or box[1] >= b[3] for b in boxes):
                img.paste(glyph, (px, py), glyph)
                boxes.append(box)
                break
    return img, boxes


def captchas(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``images``: (count, 3, 416, 416) float32 BGR in 0..255, letterboxed top-left on 114 grey."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = _photo_dir()
    photos = [Image.open(root / n).convert("RGB") for n in PHOTOS if (root / n).exists()]
    images = np.full((count, 3, SIZE, SIZE), 114.0, np.float32)
    labels = np.full((count, MAX_GLYPHS, 5), -1.0, np.float32)
    for i in range(count):
        img, boxes = click_captcha(rng, photos[int(rng.integers(len(photos)))])
        r = min(SIZE / img.size[1], SIZE / img.size[0])
        nw, nh = int(img.size[0] * r), int(img.size[1] * r)
        rgb = np.asarray(img.resize((nw, nh), Image.BILINEAR), np.float32)
        images[i, :, :nh, :nw] = rgb[:, :, ::-1].transpose(2, 0, 1)  # RGB -> BGR, HWC -> CHW
        for j, b in enumerate(boxes):
            labels[i, j] = [0, b[0] * r, b[1] * r, b[2] * r, b[3] * r]
    return {"images": images, "__labels__": labels}
