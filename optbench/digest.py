"""SHA-256 digests of what keys a cache entry or names a model: a file's bytes, a folder's files, calibration
arrays, a torch module's structure and weights, a torch module's weights alone."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def file_sha256(path: Path) -> str:
    """The file's SHA-256, full hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def file_digest(path: Path) -> str:
    """The file's SHA-256, 16 hex digits: a model's identity, a cache key's part."""
    return file_sha256(Path(path))[:16]


def tree_digest(folder: Path) -> str:
    """A folder's content digest (a SavedModel): every file's relative path and bytes, in sorted order."""
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(folder)).encode())
        h.update(file_digest(p).encode())
    return h.hexdigest()[:16]


def feeds_digest(batches: Iterable[dict[str, Any]]) -> str:
    """SHA-256 (full hex) of batches of named arrays (calibration feeds), each batch by input name in sorted order."""
    import numpy as np

    h = hashlib.sha256()
    for feeds in batches:
        for k in sorted(feeds):
            h.update(k.encode())
            h.update(np.ascontiguousarray(feeds[k]).tobytes())
    return h.hexdigest()


def module_digest(module: Any) -> str:
    """A torch module's structure (its repr) and weights, 16 hex digits: variants of one model share a program per
    point (ExecuTorch, LiteRT)."""
    import io

    import torch

    h = hashlib.sha256(repr(module).encode())
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in module.state_dict().items()}, buf)
    h.update(buf.getvalue())
    return h.hexdigest()[:16]


def weights_digest(module: Any) -> str:
    """A digest of a torch module's state: every entry's name, dtype, shape and bytes, in name order."""
    import torch

    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        if not isinstance(t, torch.Tensor):  # packed parameters and extra state: their repr
            h.update(f"{name}:{t!r}".encode())
            continue
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        flat = t.detach().cpu().contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()[:16]
