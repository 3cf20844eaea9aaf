"""Files for magika's content-type model: bytes of real files on this machine, of kinds known from where they live
(Python's standard library, byte code, extension modules, headers and bundled wheels; shell scripts, Perl modules,
gzipped changelogs and licence texts of Debian's essential packages; CA certificates; DejaVu fonts; scikit-image's
bundled images and arrays; magika's own JSON and Markdown; this repository's YAML specs and README). Each file becomes the model's input the way
magika 1.0.3 makes it (``Magika._extract_features_from_seekable`` with the standard_v3_3 config): at most 4096
bytes read from each end, the head ``lstrip()``-ed and the tail ``rstrip()``-ed, the first 1024 bytes of the head
(padded after with token 256) then the last 1024 of the tail (padded before), as int32. Files whose 8th token
would be padding are left out, as magika answers those without the model. ``__labels__``: the index of the
kind's label in the model's ``target_labels_space``."""

from __future__ import annotations

import importlib.util
import json
import sysconfig
from pathlib import Path

import numpy as np

BEG, END, BLOCK, PAD, MIN_DL = 1024, 1024, 4096, 256, 8
REPO = Path(__file__).resolve().parents[2]


def _package_dir(name: str) -> Path | None:
    found = importlib.util.find_spec(name)
    return Path(next(iter(found.submodule_search_locations))) if found and found.submodule_search_locations else None


# files whose kind is known and that other installs leave alone: Debian's essential packages, the Python
# installation itself, the packages the corpus pins, this repository
ESSENTIAL_SCRIPTS = ("/etc/profile", "/etc/bash.bashrc", "/etc/skel/.bashrc", "/etc/skel/.profile",
                     *(f"/usr/bin/{n}" for n in ("gunzip", "gzexe", "savelog", "which", "zcat", "zcmp", "zdiff",
                                                "zforce", "zgrep", "zless", "zmore", "znew", "uncompress", "ldd")))
ESSENTIAL_DOCS = ("bash", "coreutils", "debianutils", "diffutils", "findutils", "grep", "gzip", "libc6", "login",
                  "mawk", "ncurses-base", "passwd", "perl-base", "sed", "tar", "util-linux", "zlib1g")


def kinds() -> dict[str, list[Path]]:
    """Label -> candidate files, each list sorted."""
    paths = sysconfig.get_paths()
    stdlib, include = Path(paths["stdlib"]), Path(paths["include"])
    skimage = (_package_dir("skimage") or Path("/nonexistent")) / "data"
    magika = _package_dir("magika") or Path("/nonexistent")
    out = {
        "python": sorted(stdlib.glob("*.py")),
        "pythonbytecode": sorted(stdlib.glob("__pycache__/*.pyc")),
        "elf": sorted(stdlib.glob("lib-dynload/*.so")),
        "c": sorted(include.glob("*.h")),
        "zip": sorted(stdlib.glob("ensurepip/_bundled/*.whl")),
        "shell": [Path(p) for p in ESSENTIAL_SCRIPTS],
        "perl": sorted(Path("/usr/share/perl5/Debconf").glob("*.pm")),
        "gzip": [Path(f"/usr/share/doc/{d}/changelog.Debian.gz") for d in ESSENTIAL_DOCS],
        "pem": sorted(Path("/etc/ssl/certs").glob("*.pem")),
        "txt": sorted(p for p in Path("/usr/share/common-licenses").glob("*")),
        "ttf": sorted(Path("/usr/share/fonts/truetype/dejavu").glob("*.ttf")),
        "png": sorted(skimage.glob("*.png")),
        "jpeg": sorted(skimage.glob("*.jpg")),
        "npy": sorted(skimage.glob("*.npy")),
        "json": sorted(magika.glob("config/*.json")) + sorted(magika.glob("models/*/*.json")),
        "markdown": sorted(magika.glob("models/*/README.md")) + [REPO / "README.md"],
        "yaml": sorted((REPO / "experiments").glob("*.yaml")) + sorted((REPO / "configs").glob("*.yaml")),
    }
    return {k: [p for p in v if p.is_file()] for k, v in out.items()}


def features(content_head: bytes, content_tail: bytes) -> np.ndarray | None:
    """magika's input for a file whose first and last min(4096, size) bytes are given; None where the model is
    not asked (fewer than 8 bytes once stripped)."""
    beg = list(content_head.lstrip()[:BEG])
    beg += [PAD] * (BEG - len(beg))
    tail = content_tail.rstrip()
    end = list(tail[len(tail) - END:] if len(tail) > END else tail)
    end = [PAD] * (END - len(end)) + end
    if beg[MIN_DL - 1] == PAD:
        return None
    return np.asarray(beg + end, dtype=np.int32)


def file_features(path: Path) -> np.ndarray | None:
    with path.open("rb") as f:
        f.seek(0, 2)
        size = f.tell()
        if size < MIN_DL:
            return None
        n = min(BLOCK, size)
        f.seek(0)
        head = f.read(n)
        f.seek(size - n)
        tail = f.read(n)
    return features(head, tail)


def files(count: int, seed: int = 0) -> dict[str, np.ndarray]:
    """``bytes``: (count, 2048) int32; ``__labels__``: (count,) int64 label indices. Kinds taken in turn."""
    found = _package_dir("magika")
    if found is None:
        raise RuntimeError("magika is not installed: pip install --no-deps magika==1.0.3")
    space = json.loads((found / "models" / "standard_v3_3" / "config.min.json").read_text())["target_labels_space"]
    rng = np.random.default_rng(seed)
    pools = {k: [v[i] for i in rng.permutation(len(v))] for k, v in kinds().items() if v}
    x, labels = [], []
    while len(x) < count and any(pools.values()):
        for label, pool in pools.items():
            while pool and len(x) < count:
                feats = file_features(pool.pop())
                if feats is not None:
                    x.append(feats)
                    labels.append(space.index(label))
                    break
    if len(x) < count:
        raise RuntimeError(f"found {len(x)} usable files for magika's data, need {count}")
    return {"bytes": np.stack(x), "__labels__": np.asarray(labels, dtype=np.int64)}
