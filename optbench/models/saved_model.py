"""A TensorFlow SavedModel opened the way TensorFlow can open it: its object loader (``tf.saved_model.load``) first,
the v1 signature loader (``tf.compat.v1.saved_model.loader.load`` in a graph and session of its own) where the
object loader cannot revive the objects (a Keras-2 model saved with its optimizer's slots, which TensorFlow 2.16+
cannot rebuild). Both run the same signature functions; which one opened the model is recorded in its reference's
label. Every SavedModel optbench runs is opened here, in one function, so what must vet the files first sits before
it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OBJECT, V1 = "object loader", "v1 signature loader"


class SavedModelError(Exception):
    """Neither loader opened the SavedModel; the message quotes TensorFlow's own errors."""


@dataclass
class Signature:
    """A signature's tensors: inputs {key: (tensor name, dtype name, dims or None)}, outputs {key: (tensor name,
    dims or None)}, in the signature's order."""

    inputs: dict[str, tuple[str, str, list | None]]
    outputs: dict[str, tuple[str, list | None]]


class OpenedSavedModel:
    """A SavedModel opened by one loader: its signature keys, each signature's tensors, and ``call(key)``, a
    function of {input key: array} -> {output key: array} that keeps what it needs alive."""

    def __init__(self, loader: str, handle: Any, session: Any = None) -> None:
        self.loader, self.handle, self.session = loader, handle, session

    @property
    def keys(self) -> list[str]:
        if self.loader == OBJECT:
            return list(self.handle.signatures)
        return [k for k in self.handle.signature_def if not k.startswith("__")]  # not the loader's init op

    def signature(self, key: str) -> Signature:
        if self.loader == OBJECT:
            fn = self.handle.signatures[key]
            _, kwargs = fn.structured_input_signature
            ins = {k: (f"{s.name or k}:0", s.dtype.name, _dims(s.shape)) for k, s in kwargs.items()}
            outs = {k: (k, _dims(s.shape)) for k, s in sorted(fn.structured_outputs.items())}  # tf.nest's order
            return Signature(ins, outs)
        import tensorflow as tf

        sig = self.handle.signature_def[key]
        ins = {k: (t.name, tf.dtypes.as_dtype(t.dtype).name, _proto_dims(t.tensor_shape))
               for k, t in sorted(sig.inputs.items())}
        outs = {k: (t.name, _proto_dims(t.tensor_shape)) for k, t in sorted(sig.outputs.items())}
        return Signature(ins, outs)

    @property
    def eager(self) -> bool:
        """Whether ``call`` takes and returns eager tensors (the object loader) or numpy arrays (a v1 session)."""
        return self.loader == OBJECT

    def call(self, key: str):
        if self.loader == OBJECT:
            fn = self.handle.signatures[key]
            return lambda feeds: fn(**feeds)
        sig = self.signature(key)
        fetches = {k: t for k, (t, _) in sig.outputs.items()}

        def run(feeds: dict) -> dict:
            return self.session.run(fetches, {sig.inputs[k][0]: v for k, v in feeds.items()})
        return run

    def close(self) -> None:
        if self.session is not None:
            self.session.close()
        self.handle = self.session = None


def open_saved_model(path: str, tag: str, loader: str | None = None) -> OpenedSavedModel:
    """The SavedModel at ``path`` opened by ``loader``, or by the first of the two that can open it; where neither
    can, :class:`SavedModelError` with what TensorFlow said to each."""
    from optbench.frameworks import tensorflow

    tf = tensorflow()
    errors = []
    if loader in (None, OBJECT):
        try:
            return OpenedSavedModel(OBJECT, tf.saved_model.load(path, tags=[tag]))
        except Exception as e:
            errors.append(f"tf.saved_model.load: {_first_line(e)}")
    if loader in (None, V1):
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph)
        try:
            with graph.as_default():
                meta = tf.compat.v1.saved_model.loader.load(session, [tag], path)
            return OpenedSavedModel(V1, meta, session)
        except Exception as e:
            session.close()
            errors.append(f"tf.compat.v1.saved_model.loader.load: {_first_line(e)}")
    raise SavedModelError("; ".join(errors))


def _first_line(e: Exception) -> str:
    text = " ".join(str(e).split())
    return f"{e.__class__.__name__}: {text[:300]}"


def _dims(shape: Any) -> list | None:
    return None if shape.rank is None else shape.as_list()


def _proto_dims(shape: Any) -> list | None:
    if shape.unknown_rank:
        return None
    return [d.size if d.size >= 0 else None for d in shape.dim]
