"""Photographs for the nudity package's retrained MobileNet, prepared as nudity 0.2.3's ``read_tensor_from_image_file``.

nudity decodes the image to RGB, casts it to float32, resizes it with ``tf.image.resize_bilinear`` (TF 1's bilinear:
no half-pixel centres, no antialiasing) to 224 x 224 and normalises it as (x - 128) / 128. The same is done here with
TensorFlow's own ``tf.compat.v1.image.resize_bilinear``. Photographs: scikit-image's bundled colour and grey images
and crops of them (grey ones repeated to three channels, RGBA without alpha). None shows nudity: ``__labels__`` is
0 (the graph's class 0, 'sfw' in nudity's labels) for every item.
"""

from __future__ import annotations

import numpy as np


def photographs() -> list[np.ndarray]:
    from skimage import data

    def rgb(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.dtype != np.uint8:
            x = (x * 255).round().astype(np.uint8) if x.max() <= 1 else x.astype(np.uint8)
        return np.repeat(x[..., None], 3, -1) if x.ndim == 2 else x[..., :3]

    names = ["astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field", "immunohistochemistry",
             "retina", "brick", "grass", "gravel", "logo", "page", "text", "coins", "moon", "cell", "colorwheel",
             "microaneurysms", "clock", "stereo_motorcycle"]
    out = []
    for name in names:
        img = getattr(data, name)()
        img = img[0] if isinstance(img, tuple) else img
        img = rgb(img)
        out.append(img)
        h, w = img.shape[:2]
        out.append(img[h // 4: h // 4 + h // 2, w // 4: w // 4 + w // 2])  # the middle, as a crop
    return out


def tensors(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``input``: (count, 224, 224, 3) float32; ``__labels__``: (count,) int64 zeros (no nudity)."""
    import tensorflow as tf

    found = photographs()
    if count > len(found):
        raise ValueError(f"{len(found)} photographs, {count} asked for")
    keep = np.sort(np.random.default_rng(seed).choice(len(found), count, replace=False))
    out = []
    for i in keep:
        x = tf.cast(found[i], tf.float32)[None]
        x = tf.compat.v1.image.resize_bilinear(x, [224, 224])
        out.append(((x - 128.0) / 128.0).numpy()[0])
    return {"input": np.stack(out).astype(np.float32), "__labels__": np.zeros(count, np.int64)}
