"""khmersm's tags from its emissions: the CRF Viterbi decode of ``khmersm.inference._viterbi_decode`` with the
transitions from the package's ``config.json`` (0 = B, a word begins; 1 = I)."""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=1)
def _crf() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    found = importlib.util.find_spec("khmersm")
    cfg = json.loads((Path(next(iter(found.submodule_search_locations))) / "config.json").read_text("utf-8"))
    return tuple(np.asarray(cfg[k], np.float32) for k in
                 ("crf_transitions", "crf_start_transitions", "crf_end_transitions"))


def _viterbi(emissions: np.ndarray, trans: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    score = start + emissions[0]
    back = []
    for t in range(1, len(emissions)):
        cand = score[:, None] + trans
        back.append(cand.argmax(0))
        score = cand.max(0) + emissions[t]
    tags = [int((score + end).argmax())]
    for bp in reversed(back):
        tags.append(int(bp[tags[-1]]))
    return np.array(tags[::-1], dtype=np.int64)


def tags(emissions: np.ndarray) -> np.ndarray:
    """(N, T, 2) emissions -> (N, T) int64 tags."""
    trans, start, end = _crf()
    return np.stack([_viterbi(e.astype(np.float32), trans, start, end) for e in emissions])
