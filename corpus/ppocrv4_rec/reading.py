"""PP-OCRv4 rec (rapidocr-onnxruntime 1.4.4, models/ch_PP-OCRv4_rec_infer.onnx), read from the model and rapidocr.

rapidocr's TextRecognizer feeds x (B, 3, 48, W) and reads `softmax_11.tmp_0` (B, W / 8, 6625): batch first,
then time steps, then classes. Its CTCLabelDecode takes the argmax per step, merges repeats and drops class 0,
the blank; the characters are the model's `character` metadata, with the blank in front and a space at the end
(use_space_char), so class i > 0 is CHARS[i - 1].
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

SLOW = True  # about 30-45 s: behind the slow marker (CI runs it)
# no spec of its own: the run is experiments/ppocr-rec.yaml's (its rendered lines, fp32 / fp16 / static and dynamic
# int8) at batch 1 and 2, shared with the example's test (tests/conftest.py's SHARED_RUNS); optbench must read the
# batch on axis 0 of the output and judge it by greedy CTC decode
EXAMPLE = "ppocr-rec"

MODEL = "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"


def _chars() -> list[str] | None:
    found = importlib.util.find_spec("rapidocr_onnxruntime")
    if found is None:
        return None
    import onnxruntime as ort

    path = Path(next(iter(found.submodule_search_locations))) / MODEL.split("/", 1)[1]
    meta = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
    return meta.custom_metadata_map["character"].splitlines() + [" "]


CHARS = _chars()
OUTPUTS = {
    # the spec keeps ctc's defaults (space: true, strip: true): strings are compared without leading and
    # trailing runs of the space class, the last one
    "softmax_11.tmp_0": {"batch_axis": 0, "task": {"kind": "ctc", "blank": 0, "charset": CHARS,
                                                   "strip_class": len(CHARS) if CHARS else None}},
}


def decode(probs: np.ndarray) -> list[str]:
    """Greedy CTC decode of (N, T, C) probabilities into strings, as rapidocr's CTCLabelDecode does."""
    out = []
    for ids in probs.argmax(-1):
        keep = np.ones(len(ids), bool)
        keep[1:] = ids[1:] != ids[:-1]
        out.append("".join(CHARS[i - 1] for i in ids[keep & (ids != 0)]))
    return out
