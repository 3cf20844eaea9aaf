"""TFLite backend: a ``.tflite`` file as given, run by the LiteRT interpreter on the CPU (``ai_edge_litert``, or the
same interpreter inside TensorFlow where LiteRT's own package is not installed). It computes the reference of a
TFLite model. (The ``litert`` backend is another path: it converts a torch module into a .tflite.)

A flatbuffer's tensors have static shapes; another batch resizes the input before the timed calls."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, host_array, register


class TfliteOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    threads: int | None = Field(None, ge=1, description="Interpreter threads; absent: the CPUs this process may use.")


class TfliteSession(Session):
    def __init__(self, native, threads: int | None = None) -> None:
        from optbench.backends.onnxruntime import default_threads
        from optbench.frameworks import tflite_interpreter

        interpreter, self.runtime = tflite_interpreter()
        self.it = interpreter(model_path=native.path, num_threads=threads or default_threads())
        self.it.allocate_tensors()
        inputs = {d["name"]: d for d in self.it.get_input_details()}
        outputs = {d["name"]: d for d in self.it.get_output_details()}
        self.inputs = [(i["name"], inputs[i["tensor"]]) for i in native.inputs]
        self.outputs = [(o["name"], outputs[o["tensor"]]["index"]) for o in native.outputs]
        self.artifact_bytes = None

    def prepare(self, feeds: dict[str, np.ndarray]) -> list:
        """Inputs in the model's types; a new shape resizes the interpreter's tensors here, untimed."""
        bound, resized = [], False
        for name, d in self.inputs:
            x = np.ascontiguousarray(feeds[name]).astype(d["dtype"], copy=False)
            if list(self.it.get_tensor(d["index"]).shape) != list(x.shape):
                self.it.resize_tensor_input(d["index"], list(x.shape))
                resized = True
            bound.append((d["index"], x))
        if resized:
            self.it.allocate_tensors()
        return bound

    def run(self, bound: list) -> Any:
        for index, x in bound:
            self.it.set_tensor(index, x)
        self.it.invoke()
        return None

    def to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        return {name: host_array(self.it.get_tensor(index)) for name, index in self.outputs}

    def close(self) -> None:
        self.it = None


@register
class Tflite(Backend):
    name = "tflite"
    requires = {"ai_edge_litert": "ai-edge-litert", "tensorflow": "tensorflow-cpu"}
    requires_any = True
    imports = ("ai_edge_litert.interpreter", "tensorflow")
    extra = "litert"
    consumes = "tflite"
    runs = ("tflite",)
    reference_for = "tflite"
    reference_title = "LiteRT interpreter CPU"
    Options = TfliteOptions

    @classmethod
    def reference_infer(cls, model: Any):
        """The .tflite by the LiteRT interpreter on the CPU: {output: host array}."""
        return TfliteSession(model).infer

    @classmethod
    def reference_label(cls, model_kind: str) -> str:
        from optbench.frameworks import tflite_interpreter

        return f"tflite fp32 cpu ({tflite_interpreter()[1]})"

    @classmethod
    def skip_reason(cls, target: Target, options: TfliteOptions) -> str | None:
        if target.precision != "fp32":
            return "the .tflite runs as given (its own precision); other precisions are built from its ONNX conversion"
        return None

    @classmethod
    def describe(cls, options: TfliteOptions, target: Target) -> dict[str, Any]:
        return {"threads": options.threads, "runs": "the .tflite as given, LiteRT interpreter on the CPU"}

    def build(self, artifact: Artifact, target: Target) -> Session:
        from pathlib import Path

        session = TfliteSession(artifact.native, self.options.threads)
        session.artifact_bytes = Path(artifact.native.path).stat().st_size
        session.facts = {"tflite": {"runtime": session.runtime}}
        return session
