"""khmersm 1.4.2 ``model.onnx`` (weights in ``model.onnx.data`` beside it), a character transformer tagger read
as ``khmersm/inference.py`` reads it: inputs ``x`` (batch, seq) int64 character ids and ``mask`` (batch, seq)
bool; output ``emissions`` (1, seq, 2), batch on axis 0, B/I emission scores per character. The graph declares a
dynamic batch but a Reshape bakes in 1 (``node_view``: {seq, 1, 3, 192}), so one text per call. The package
turns emissions into tags by CRF Viterbi (transitions in ``config.json``); tags are compared exactly."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

SLOW = True  # about 25 s: behind the slow marker (CI runs it)
NEEDS = ["glob:/usr/share/locale/km/LC_MESSAGES/*.mo"]  # the text: Debian's Khmer translations


def _config() -> dict:
    found = importlib.util.find_spec("khmersm")
    return json.loads((Path(list(found.submodule_search_locations)[0]) / "config.json").read_text("utf-8"))


def viterbi_tags(emissions: np.ndarray) -> np.ndarray:
    cfg = _config()
    trans = np.array(cfg["crf_transitions"], np.float32)
    start = np.array(cfg["crf_start_transitions"], np.float32)
    end = np.array(cfg["crf_end_transitions"], np.float32)
    out = np.zeros(emissions.shape[:2], np.int64)
    for n, em in enumerate(emissions.astype(np.float32)):
        score, pointers = start + em[0], []
        for t in range(1, len(em)):
            total = score.reshape(-1, 1) + trans        # previous tag x next tag
            pointers.append(total.argmax(axis=0))
            score = total.max(axis=0) + em[t]
        best = int(np.argmax(score + end))
        path = [best]
        for p in pointers[::-1]:
            best = int(p[best])
            path.append(best)
        out[n] = path[::-1]
    return out


OUTPUTS = {
    "emissions": {"batch_axis": 0, "postprocess": viterbi_tags, "task": None},
}
