"""PP-OCRv4 rec (rapidocr-onnxruntime 1.4.4, models/ch_PP-OCRv4_rec_infer.onnx), read from the model and rapidocr.

rapidocr's TextRecognizer feeds x (B, 3, 48, W) and reads `softmax_11.tmp_0` (B, W / 8, 6625): batch first,
then time steps, then classes. Its CTCLabelDecode takes the argmax per step, merges repeats and drops class 0,
the blank; the characters are the model's `character` metadata, with the blank in front and a space at the end.
"""

from __future__ import annotations

import numpy as np

OUTPUTS = {
    "softmax_11.tmp_0": {"batch_axis": 0, "task": {"kind": "ctc", "blank": 0}},
}


def charset(session) -> list[str]:
    """Class index -> character, as rapidocr builds it (blank first, space last)."""
    chars = session.get_modelmeta().custom_metadata_map["character"].splitlines()
    return [""] + chars + [" "]


def decode(probs: np.ndarray, chars: list[str]) -> list[str]:
    """Greedy CTC decode of (N, T, C) probabilities into strings, as rapidocr's CTCLabelDecode does."""
    out = []
    for ids in probs.argmax(-1):
        keep = np.ones(len(ids), bool)
        keep[1:] = ids[1:] != ids[:-1]
        out.append("".join(chars[i] for i in ids[keep & (ids != 0)]))
    return out
