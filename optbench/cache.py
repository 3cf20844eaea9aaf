"""Content-addressed artifact cache.

A key is the hash of everything that determines an artifact (model identity, transform,
export and precision settings, library versions). A rerun with an unchanged spec finds
every artifact and builds nothing; ``--no-cache`` rebuilds (and refreshes) them.

A cache several users or nodes share is a security boundary: artifacts include pickled torch modules, and
whoever can write one could run code in every later sweep that loads it. So each artifact's digests (every
file of its folder) go to a *ledger* that only this user writes (``$XDG_STATE_HOME/optbench/ledger``, mode
0700, never beside the artifact), and a cached artifact is used only when its files match the ledger: a
mismatch is refused with the reason, an artifact the ledger does not know (another user's, or one made before
the ledger) is rebuilt and recorded. Loads check again right before they read (:meth:`ArtifactCache.verify`).
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

from optbench.digest import file_sha256


def default_cache_dir() -> Path:
    env = os.environ.get("OPTBENCH_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "optbench"


# the libraries that build each kind of artifact: a cache key holds their versions only, so upgrading a runtime
# rebuilds what it builds and nothing else (the backends' own artifacts put their runtime's version in the key)
BUILT_BY: dict[str, tuple[str, ...]] = {
    "model": ("torch", "transformers"),
    "model-state": ("torch", "torchvision"),
    "transform": ("torch", "torch-pruning"),
    "onnx": ("torch", "onnx", "onnxsim", "transformers"),
    "normalized": ("onnx", "onnxruntime"),
    "fp16": ("onnx", "onnxruntime"),
    "int8": ("onnx", "onnxruntime", "nvidia-modelopt", "torch"),
    "calibration": ("onnx", "onnxruntime"),
    "native-onnx": ("tf2onnx", "tensorflow", "tensorflow-cpu", "onnx"),  # a framework's file converted by tf2onnx
    "entrypoint": (),  # a copy of a model's entrypoint file, kept for re-timing (optbench.run.kept): its bytes alone
}
_BASE = ("torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxsim", "nvidia-modelopt", "transformers")


def library_versions(packages: tuple[str, ...] = _BASE) -> dict[str, str]:
    """Installed versions of ``packages`` (by default the libraries every run builds with; env.json's
    ``libraries``)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in packages:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            continue
    if "onnxruntime" in packages and "onnxruntime" not in out:  # the GPU build installs the same module
        out.update(library_versions(("onnxruntime-gpu",)))
    return out


class CacheIntegrityError(RuntimeError):
    """A cached artifact's files differ from the digests recorded when this user built it."""


def private(path: Path, what: str) -> None:
    """Refuse, as ssh does with keys, a folder or file that another user could write: owned by someone else, or
    writable by the group or everyone. The ledger vouches for pickles the workers load, so whoever can write
    it (or swap the cache's files under it) could run code as this user."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if st.st_uid != os.getuid():
        raise CacheIntegrityError(f"the {what} {path} belongs to another user (uid {st.st_uid}); optbench loads only "
                                  f"what this user's own ledger vouches for. Use your own folder")
    if st.st_mode & 0o022:
        raise CacheIntegrityError(f"the {what} {path} is writable by other users (mode {st.st_mode & 0o777:o}): "
                                  f"anyone could plant an artifact and vouch for it. Fix: chmod go-w {path}")


def ledger_root() -> Path:
    base = os.environ.get("OPTBENCH_LEDGER") or \
        Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state")) / "optbench" / "ledger"
    root = Path(base)
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    private(root, "ledger folder")
    return root


def _digests(folder: Path) -> dict[str, str]:
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            out[f.relative_to(folder).as_posix()] = file_sha256(f)
    return out


class ArtifactCache:
    def __init__(self, root: Path | None = None, enabled: bool = True) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled

    def key(self, kind: str, payload: Any) -> str:
        versions = library_versions(BUILT_BY.get(kind, ("onnx",)))  # a backend's kind: it keys its own runtime
        blob = json.dumps({"kind": kind, "payload": payload, "versions": versions}, sort_keys=True, default=str)
        return f"{kind}-{hashlib.sha256(blob.encode()).hexdigest()[:20]}"

    def get_or_build(self, key: str, filename: str, build: Callable[[Path], Any]) -> tuple[Path, bool]:
        """Return (path of the artifact, whether it was found in the cache).

        ``build(folder)`` writes ``folder/filename`` (and any side files); the folder is moved
        into place only when the build succeeded, so a crash never leaves a half artifact.
        """
        import fcntl

        final = self.root / key
        self.root.mkdir(parents=True, exist_ok=True)
        # one builder per key at a time (variants in flight together share exports): the others wait, then use it
        with open(self.root / f".{key}.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.enabled and (final / filename).exists() and self._trusted(final):
                return final / filename, True
            return self._build(key, final, filename, build), False

    def _build(self, key: str, final: Path, filename: str, build: Callable[[Path], Any]) -> Path:
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            build(tmp)
            if not (tmp / filename).exists():
                raise RuntimeError(f"artifact build wrote no {filename}")
            digests = _digests(tmp)
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            self._record(key, digests)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final / filename

    # ---------------------------------------------------------------- the ledger
    def _ledger(self, key: str) -> Path:
        scope = hashlib.sha256(str(self.root.resolve()).encode()).hexdigest()[:16]
        return ledger_root() / scope / f"{key}.json"

    def _record(self, key: str, digests: dict[str, str]) -> None:
        path = self._ledger(key)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(digests, sort_keys=True))
        os.replace(tmp, path)

    def _trusted(self, folder: Path) -> bool:
        """True when the folder matches this user's ledger; False (rebuild) when the ledger has no entry for it;
        raises :class:`CacheIntegrityError` when it has one and the files differ."""
        entry = self._ledger(folder.name)
        if not entry.exists():
            return False
        for path, what in ((entry.parent, "ledger folder"), (entry, "ledger entry"), (self.root, "artifact cache"),
                           (folder, "cached artifact folder")):
            private(path, what)
        recorded = json.loads(entry.read_text())
        found = _digests(folder)
        if found != recorded:
            changed = sorted(k for k in set(found) | set(recorded) if found.get(k) != recorded.get(k))
            raise CacheIntegrityError(
                f"cached artifact {folder} does not match the digests recorded when it was built (changed: "
                f"{', '.join(changed[:4])}); refusing to load it. Delete the folder, or run with --no-cache")
        return True

    def verify(self, path: Path) -> Path:
        """Check the artifact folder holding ``path`` against the ledger right before loading it."""
        folder = Path(path).parent
        if folder.parent.resolve() == self.root.resolve() and not self._trusted(folder):
            raise CacheIntegrityError(f"cached artifact {folder} is not in this user's ledger; refusing to load it")
        return Path(path)

    def check_private(self) -> None:
        """Before a run: the ledger and the cache folder writable by this user alone (see :func:`private`)."""
        if self.enabled:
            ledger_root()
            private(self.root, "artifact cache")

    def size_bytes(self) -> int:
        if not self.root.exists():
            return 0
        return sum(f.stat().st_size for f in self.root.rglob("*") if f.is_file())
