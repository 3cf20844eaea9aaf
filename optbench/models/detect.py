"""Which framework wrote a model file, from its content first and its suffix second: what a spec-less run
(``optbench run model.tflite``) and ``optbench plan FILE`` read it as. A file whose content and suffix disagree is
read by its content; a file optbench cannot read is one line saying what it found."""

from __future__ import annotations

import zipfile
from pathlib import Path

from optbench.errors import SpecError

# the model sources a file can be (the spec's ``source`` tags), by the suffixes they are usually saved with
SUFFIXES = {".onnx": "onnx", ".tflite": "tflite", ".pt2": "exported", ".pt": "torchscript", ".pth": "torchscript",
            ".jit": "torchscript", ".ptl": "torchscript", ".pb": "tensorflow", ".xml": "openvino"}
KNOWN = "an ONNX file, a .tflite, a TorchScript file (.pt/.jit), a torch.export program (.pt2), a SavedModel " \
        "folder, a frozen GraphDef (.pb) or an OpenVINO IR (.xml)"


def is_model_file(path: Path) -> bool:
    """Whether ``path`` names a model rather than a spec: a SavedModel folder, or a file whose suffix or first bytes
    are a model format's (a spec is YAML text)."""
    if path.is_dir():
        return _saved_model_folder(path)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return False
    return path.suffix.lower() in SUFFIXES or (path.is_file() and _by_content(path) is not None)


def model_format(path: Path) -> str:
    """The model source tag of ``path`` (onnx, tflite, torchscript, exported, tensorflow, openvino)."""
    if path.is_dir():
        if _saved_model_folder(path):
            return "tensorflow"
        raise SpecError(f"{path} is a folder without saved_model.pb: not a SavedModel", expected=KNOWN)
    if not path.is_file():
        raise SpecError(f"{path}: no such model file")
    found = _by_content(path)
    if found is None:
        raise SpecError(f"{path.name}: optbench cannot tell what wrote this file (its first bytes are "
                        f"{path.read_bytes()[:8]!r})", expected=KNOWN)
    if found == "pickle":
        raise SpecError(f"{path.name} is a torch.save pickle (weights or a whole module), not TorchScript nor a "
                        "torch.export program: it runs only with the code that defines the model, so it needs a "
                        "spec (model: {source: python, entrypoint: ...})")
    if found == "saved_model.pb":
        raise SpecError(f"{path.name} is a SavedModel's graph: name its folder ({path.parent})")
    return found


def _saved_model_folder(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def _by_content(path: Path) -> str | None:
    head = _head(path)
    if head[4:8] == b"TFL3":
        return "tflite"
    if head.startswith(b"PK\x03\x04"):
        return _torch_archive(path)
    if head.lstrip().startswith((b"<?xml", b"<net")):
        return "openvino"
    if path.name == "saved_model.pb":
        return "saved_model.pb"
    if _text(head):  # a spec, a README: not a protobuf
        return None
    if head[:1] == b"\x08":  # a ModelProto's first field: ir_version (field 1, varint)
        return "onnx"
    if head[:1] == b"\x0a":  # a GraphDef's first field: node (field 1, length-delimited)
        return "tensorflow"
    return None


def _text(head: bytes) -> bool:
    try:
        text = head.decode()
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\r\n" for c in text)


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(64)


def _torch_archive(path: Path) -> str | None:
    """TorchScript archives hold the module's code (``<root>/code/``), torch.export programs an archive format
    record; a zip with neither is torch.save's pickle (or not torch's at all)."""
    try:
        names = zipfile.ZipFile(path).namelist()
    except zipfile.BadZipFile:
        return None
    parts = {n.split("/", 1)[1] if "/" in n else n for n in names}
    if "archive_format" in parts or any(p.startswith("models/") and p.endswith(".json") for p in parts):
        return "exported"
    if any(p.startswith("code/") for p in parts):
        return "torchscript"
    return "pickle" if "data.pkl" in parts else None
