"""Content-addressed artifact cache.

A key is the hash of everything that determines an artifact (model identity, transform,
export and precision settings, library versions). A rerun with an unchanged spec finds
every artifact and builds nothing; ``--no-cache`` rebuilds (and refreshes) them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def default_cache_dir() -> Path:
    env = os.environ.get("OPTBENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optbench"


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxsim", "nvidia-modelopt", "tensorrt",
                "transformers"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    return out


class ArtifactCache:
    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled

    def key(self, kind: str, payload: Any) -> str:
        blob = json.dumps({"kind": kind, "payload": payload, "versions": library_versions()}, sort_keys=True, default=str)
        return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"

    def get_or_build(self, key: str, filename: str, build: Callable[[Path], Any]) -> tuple[Path, bool]:
        """Return (path of the artifact, whether it was found in the cache).

        ``build(folder)`` writes ``folder/filename`` (and any side files); the folder is moved
        into place only when the build succeeded, so a crash never leaves a half artifact.
        """
        final = self.root / key
        if self.enabled and (final / filename).exists():
            return final / filename, True
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            build(tmp)
            if not (tmp / filename).exists():
                raise RuntimeError(f"artifact build wrote no {filename}")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final / filename, False

    def size_bytes(self) -> int:
        if not self.root.exists():
            return 0
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())
