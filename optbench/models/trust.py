"""Which model files optbench executes and which it only reads, enforced before a file is loaded.

A python entrypoint, a data function and a postprocess hook are code, run by design. A model file is data: a
graph whose ops the model's framework runs. Some ops of those frameworks reach outside the computation (read or
write files, print, call back into Python, talk to other machines); a model from a stranger that holds one is
refused with one line naming the ops, unless the spec says ``model.trust: true``. TensorFlow's own
``saved_model_cli scan`` refuses ReadFile, WriteFile and PrintV2; the list here extends it.

- TensorFlow SavedModel: the ops of every signature's functions (and what they call), the init ops included; the
  restore op TF1's loader runs may read its checkpoint (RestoreV2) and nothing else; the save function every
  SavedModel has (SaveV2) is never run and not scanned.
- frozen GraphDef: every node and every library function.
- TorchScript: the archive's code (``code/**.py``: methods, ``__setstate__``) is read as text, before
  ``torch.jit.load`` runs any of it.
- torch.export (``.pt2``): its pickles are read with ``weights_only=True`` and never again unsafely
  (:func:`load_exported`), and its graph is scanned like TorchScript's.
"""

from __future__ import annotations

import os
import re
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from optbench.errors import SpecError

# TensorFlow ops that touch files, processes, the console or the network
TF_DENIED = frozenset({
    # saved_model_cli scan's denylist
    "ReadFile", "WriteFile", "PrintV2",
    "Print", "MatchingFiles", "ShardedFilename", "ShardedFilespec", "ImmutableConst",
    "PyFunc", "PyFuncStateless", "EagerPyFunc",
    "Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2", "RestoreSlice", "MergeV2Checkpoints",
    "WholeFileReader", "WholeFileReaderV2", "TextLineReader", "TextLineReaderV2", "FixedLengthRecordReader",
    "FixedLengthRecordReaderV2", "TFRecordReader", "TFRecordReaderV2", "LMDBReader",
    "TFRecordDataset", "TFRecordDatasetV2", "TextLineDataset", "FixedLengthRecordDataset",
    "FixedLengthRecordDatasetV2", "LMDBDataset", "ExperimentalLMDBDataset", "SqlDataset", "ExperimentalSqlDataset",
    "CSVDataset", "CSVDatasetV2", "ExperimentalCSVDataset", "SnapshotDataset", "SnapshotDatasetV2",
    "SaveDataset", "SaveDatasetV2", "LoadDataset", "DatasetToTFRecord", "ExperimentalDatasetToTFRecord",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "LoadAndRemapMatrix",
    "GenerateVocabRemapping",
    "CreateSummaryFileWriter", "CreateSummaryDbWriter", "WriteSummary", "WriteRawProtoSummary",
    "WriteScalarSummary", "WriteHistogramSummary", "WriteImageSummary", "WriteAudioSummary", "WriteGraphSummary",
    "ImportEvent", "FlushSummaryWriter", "CloseSummaryWriter",
    "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3", "DebugNanCount", "DebugNumericSummary",
    "DebugNumericSummaryV2",
    "RemoteCall", "Rpc", "TryRpc", "RpcCall", "RpcClient", "RpcServer", "RpcServerStart", "RpcServerRegister",
    "_Send", "_Recv", "_HostSend", "_HostRecv", "Send", "Recv",
    "CollectiveReduce", "CollectiveReduceV2", "CollectiveReduceV3", "CollectiveGather", "CollectiveGatherV2",
    "CollectiveBcastSend", "CollectiveBcastRecv", "CollectiveBcastSendV2", "CollectiveBcastRecvV2",
    "CollectiveAllToAllV2", "CollectiveAllToAllV3", "NcclAllReduce", "NcclBroadcast", "NcclReduce",
    "GcsConfigureCredentials", "GcsConfigureBlockCache", "BigQueryReader",
})

# the variable save and restore every SavedModel has; allowed in its restore op only
CHECKPOINT_OPS = frozenset({"RestoreV2", "SaveV2", "MergeV2Checkpoints", "ShardedFilename", "ShardedFilespec",
                            "Restore", "RestoreSlice", "Save", "SaveSlices"})
INIT_COLLECTIONS = ("saved_model_main_op", "legacy_init_op", "main_op")  # TF1 SavedModels' init ops

# TorchScript / torch.export operators that touch files, the console or the network (namespace::name)
TORCH_DENIED = frozenset({"aten::from_file", "aten::save", "aten::_print", "prim::Print", "debugprims::load_tensor"})
TORCH_DENIED_NAMESPACES = ("c10d", "_c10d_functional", "_c10d_functional_autograd", "_dtensor")

_TRUST_HINT = "if you trust the file and its author, set model.trust: true"


def refuse_untrusted(model: Any, spec_dir: Path) -> None:
    """Refuse the model file of ``model`` (a model spec) when its graph holds ops that reach outside the
    computation, before anything of it is loaded; a spec with ``trust: true``, and sources that are not model files
    of these frameworks, pass."""
    if model.source not in SCANS or getattr(model, "trust", False):
        return
    from optbench.paths import resolve_path

    check_file(model.source, resolve_path(model.path, spec_dir / "spec.yaml"), getattr(model, "tag", "serve"),
               shown_as=model.path)


def check_file(source: str, path: Path, tag: str = "serve", shown_as: str | None = None) -> None:
    """Refuse the model file at ``path`` (of model source ``source``) when its graph holds ops that reach outside
    the computation: what :func:`refuse_untrusted` checks, for a file read without a spec (a spec-less run)."""
    scan = SCANS.get(source)
    if scan is None or not path.exists():
        return  # the loader says the file is missing
    if found := scan(path, tag):
        shown = ", ".join(sorted(found)[:12]) + (f" (+{len(found) - 12} more)" if len(found) > 12 else "")
        raise SpecError(f"the model file holds ops that read or write files, print, run Python or use the network "
                        f"({shown}); optbench does not run them from a file it does not trust; {_TRUST_HINT}",
                        field="model.path", found=repr(shown_as or str(path)))


# ---------------------------------------------------------------- TensorFlow
def tensorflow_ops(path: Path, tag: str = "serve") -> set[str]:
    return saved_model_ops(path, tag) if path.is_dir() else frozen_graph_ops(path)


def saved_model_ops(folder: Path, tag: str) -> set[str]:
    """Denied ops the SavedModel's meta graph ``tag`` would run through any of its signatures."""
    try:
        from tensorflow.core.protobuf import saved_model_pb2
    except ImportError:
        return set()  # no TensorFlow here: nothing can load the file either (the loader says what is missing)

    saved = saved_model_pb2.SavedModel()
    try:
        saved.ParseFromString((folder / "saved_model.pb").read_bytes())
    except Exception as e:
        raise SpecError(f"not a SavedModel: saved_model.pb does not parse ({e.__class__.__name__})",
                        field="model.path", found=repr(str(folder))) from None
    found: set[str] = set()
    for meta in saved.meta_graphs:
        if tag not in meta.meta_info_def.tags:
            continue
        functions = {f.signature.name: f for f in meta.graph_def.library.function}
        nodes = {n.name: n for n in meta.graph_def.node}
        starts = [t.name for s in meta.signature_def.values() for t in s.outputs.values()]
        starts += [n for key in INIT_COLLECTIONS if key in meta.collection_def
                   for n in meta.collection_def[key].node_list.value]  # what TF1's loader runs when it loads
        reached = _graph_closure(nodes, [n.split(":")[0].lstrip("^") for n in starts])
        found |= _denied_in(reached, functions)
        if meta.saver_def.restore_op_name:  # TF1's loader runs the restore op: checkpoint reads, nothing else
            restore = _graph_closure(nodes, [meta.saver_def.restore_op_name.split(":")[0]])
            found |= _denied_in(restore, functions) - CHECKPOINT_OPS
    return found


def frozen_graph_ops(path: Path) -> set[str]:
    """Denied ops of a frozen GraphDef: its nodes and every function of its library."""
    try:
        from tensorflow.core.framework import graph_pb2
    except ImportError:
        return set()  # as above

    graph = graph_pb2.GraphDef()
    try:
        graph.ParseFromString(path.read_bytes())
    except Exception:
        return set()  # not a GraphDef: the loader says so
    functions = {f.signature.name: f for f in graph.library.function}
    return _denied_in([*graph.node, *(n for f in graph.library.function for n in f.node_def)], functions)


def _graph_closure(nodes: dict, names: list[str]) -> list:
    """The nodes the named ones depend on (data and control inputs), themselves included."""
    seen: dict[str, Any] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen[name] = nodes[name]
        todo += [i.split(":")[0].lstrip("^") for i in nodes[name].input]
    return list(seen.values())


def _denied_in(nodes: list, functions: dict) -> set[str]:
    """Denied ops among ``nodes`` and in every library function they call, transitively."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = list(nodes)
    while todo:
        node = todo.pop()
        if node.op in TF_DENIED:
            found.add(node.op)
        for called in [node.op, *_called(node)]:
            if called in functions and called not in seen:
                seen.add(called)
                todo += list(functions[called].node_def)
    return found


def _called(node: Any) -> list[str]:
    """The functions a node's attributes name (PartitionedCall's f, While's cond and body, Case's branches)."""
    out = []
    for value in node.attr.values():
        if value.HasField("func"):
            out.append(value.func.name)
        elif value.HasField("list"):
            out += [f.name for f in value.list.func]
    return out


# ---------------------------------------------------------------- torch
_CALL = re.compile(r"(?<![\w.])(torch\.ops\.|ops\.|torch\.)([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?\s*\(")
_PRINT = re.compile(r"(?<![\w.])print\s*\(")
_TARGET = re.compile(r'"target":\s*"torch\.ops\.([A-Za-z_]\w*)\.([A-Za-z_]\w*)')


def torchscript_ops(path: Path, tag: str | None = None) -> set[str]:
    """Denied operators called by a TorchScript archive's code (its ``code/`` files, read as text)."""
    found: set[str] = set()
    for text in _archive_texts(path, lambda name: "/code/" in f"/{name}" and name.endswith(".py")):
        found |= _torch_calls(text)
    return found


def exported_ops(path: Path, tag: str | None = None) -> set[str]:
    """Denied operators in a torch.export archive's serialized graphs (``models/*.json``)."""
    found: set[str] = set()
    for text in _archive_texts(path, lambda name: "/models/" in f"/{name}" and name.endswith(".json")):
        for ns, op in _TARGET.findall(text):
            found |= _denied_op(ns, op)
    return found


def _archive_texts(path: Path, wanted) -> list[str]:
    try:
        with zipfile.ZipFile(path) as z:
            return [z.read(i).decode("utf-8", errors="replace") for i in z.infolist()
                    if wanted(i.filename) and i.file_size < 256 << 20]
    except (zipfile.BadZipFile, OSError):
        return []  # not an archive: the loader says so


def _torch_calls(text: str) -> set[str]:
    found = {"prim::Print"} if _PRINT.search(text) else set()
    for prefix, first, second in _CALL.findall(text):
        if prefix == "torch." and first != "ops":
            found |= _denied_op("aten", first)
        elif second:
            found |= _denied_op(first, second)
    return found


def _denied_op(namespace: str, name: str) -> set[str]:
    op = f"{namespace}::{name}"
    return {op} if op in TORCH_DENIED or namespace in TORCH_DENIED_NAMESPACES else set()


SCANS = {"tensorflow": tensorflow_ops, "torchscript": torchscript_ops, "exported": exported_ops}


# ---------------------------------------------------------------- torch.export's pickles
@contextmanager
def _weights_only():
    """Every torch.load inside reads with weights_only=True, whatever its call site asks: torch.export.load falls
    back to weights_only=False when a pickle is not plain tensors, which would run what the pickle names."""
    keys = ("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def load_exported(path: Path, trusted: bool) -> Any:
    """``torch.export.load`` of ``path``; unless ``trusted``, its pickles may hold tensors and plain values only
    (a pickle naming anything else is refused with one line, never unpickled)."""
    import pickle

    import torch

    if trusted:
        return torch.export.load(str(path))
    with _weights_only():
        try:
            return torch.export.load(str(path))
        except pickle.UnpicklingError as e:
            named = re.search(r"GLOBAL ([\w.]+)", str(e))
            what = f"names {named.group(1)}" if named else "holds objects other than tensors"
            raise SpecError(f"the .pt2 holds a pickle that {what}; optbench reads a .pt2 with weights_only=True "
                            f"and never unpickles it unsafely; {_TRUST_HINT}", field="model.path",
                            found=repr(str(path))) from None
