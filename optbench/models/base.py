"""What a model source returns, and the registry of sources (by the spec's ``source`` tag)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SOURCES: dict[str, Callable[..., LoadedModel]] = {}


@dataclass
class NativeModel:
    """A model file that its own framework runs (a TensorFlow SavedModel or frozen graph, a .tflite, an OpenVINO IR):
    where it is, which entry point runs (a signature), and its tensors by the names the spec and the rows use.

    ``inputs``: one {name (the spec's), model (the model's own name), tensor (the graph tensor), dtype, shape} per
    spec input, in the spec's order; ``outputs``: one {name, tensor, shape (declared dims, None where unknown)} per
    output, in the model's order; ``loader``: how a SavedModel was opened (see :mod:`optbench.models.saved_model`).
    It travels to the worker processes as JSON (:meth:`to_dict`)."""

    framework: str
    form: str  # saved_model | frozen_graph | flatbuffer | ir
    path: str
    entry: str | None = None
    tag: str | None = None
    inputs: list[dict] = field(default_factory=list)
    outputs: list[dict] = field(default_factory=list)
    loader: str | None = None

    @property
    def output_names(self) -> list[str]:
        return [o["name"] for o in self.outputs]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NativeModel:
        return cls(**data)

    def describe(self) -> str:
        """How rows name what ran: 'SavedModel signature serving_default', 'frozen graph', ..."""
        form = {"saved_model": "SavedModel", "frozen_graph": "frozen graph", "flatbuffer": "TFLite flatbuffer",
                "ir": "OpenVINO IR"}.get(self.form, self.form)
        text = f"{form} signature '{self.entry}'" if self.entry else form
        return f"{text}, {self.loader}" if self.loader else text

    def declared(self) -> dict:
        """The dims the model file declares for its inputs (by the spec's names) and outputs, in the form of
        :func:`optbench.interpret.graph_facts` (an unknown dim is '?'; an unknown rank is left out)."""
        def dims(shape: list | None) -> list | None:
            return None if shape is None else ["?" if d is None else d for d in shape]

        return {"inputs": {i.get("name", i["model"]): dims(i.get("shape")) for i in self.inputs},
                "outputs": {o["name"]: dims(o.get("shape")) for o in self.outputs}}


@dataclass
class LoadedModel:
    """A model ready for transforms and export; ``module`` is None for models that are files of another framework
    (an ONNX file: ``onnx_path``; TensorFlow, TFLite, OpenVINO: ``native``)."""

    module: Any | None
    onnx_path: Path | None = None
    tokenizer: Any | None = None
    output_names: list[str] = field(default_factory=lambda: ["output"])
    identity: str = ""
    framework: str = "torch"  # whose runtime computes the reference: torch, onnx, tensorflow, tflite, openvino
    native: NativeModel | None = None
    # the module is read from the user's file wherever it is needed (TorchScript, torch.export programs cannot be
    # pickled into the artifact cache)
    from_file: bool = False


def model_source(name: str):
    def wrap(fn):
        SOURCES[name] = fn
        return fn
    return wrap
