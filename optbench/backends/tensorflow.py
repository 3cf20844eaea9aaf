"""TensorFlow backend: a SavedModel's signature (or a frozen graph) run by TensorFlow itself on the CPU, in fp32 as
saved. It computes the reference of a TensorFlow model, and as a backend it times the framework the model came
from beside the runtimes its conversions run on."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, host_array, register


class TfOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    threads: int | None = Field(
        None, ge=1, description="intra-op threads; absent: the CPUs this process may run on (its affinity).")


def load_callable(native: Any, threads: int | None = None):
    """``(call, keep, eager)``: ``call(feeds by the spec's names) -> {output: tensor or array}`` of the SavedModel's
    signature (opened by the loader the run recorded) or the frozen graph; ``keep`` holds what the function needs
    alive (a signature only weakly references its variables); ``eager``: whether it takes eager tensors."""
    from optbench.backends.onnxruntime import default_threads
    from optbench.frameworks import tensorflow

    tf = tensorflow()
    try:  # only before TensorFlow's runtime starts (a worker process's first use)
        tf.config.threading.set_intra_op_parallelism_threads(threads or default_threads())
    except RuntimeError:
        pass
    names = {i["name"]: i["model"] for i in native.inputs}
    if native.form == "saved_model":
        from optbench.models.saved_model import open_saved_model

        opened = open_saved_model(native.path, native.tag, native.loader)
        fn = opened.call(native.entry)

        def call(feeds: dict) -> dict:
            out = fn({names[k]: v for k, v in feeds.items() if k in names})
            return {o["name"]: out[o["name"]] for o in native.outputs}  # a signature's outputs by their keys
        return call, opened, opened.eager
    graph = tf.compat.v1.GraphDef()
    with open(native.path, "rb") as f:
        graph.ParseFromString(f.read())
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph, name=""), [])
    pruned = wrapped.prune([wrapped.graph.get_tensor_by_name(i["tensor"]) for i in native.inputs],
                           [wrapped.graph.get_tensor_by_name(o["tensor"]) for o in native.outputs])

    def run_graph(feeds: dict) -> dict:
        out = pruned(*(feeds[i["name"]] for i in native.inputs))
        return dict(zip(native.output_names, out))
    return run_graph, wrapped, True


class TfSession(Session):
    def __init__(self, call, keep, eager: bool, native) -> None:
        from optbench.frameworks import tensorflow

        self.tf, self.call, self.keep, self.eager, self.native = tensorflow(), call, keep, eager, native

    def prepare(self, feeds: dict[str, np.ndarray]) -> dict:
        if not self.eager:  # a v1 session is fed arrays
            return {i["name"]: np.ascontiguousarray(feeds[i["name"]]) for i in self.native.inputs}
        with self.tf.device("/cpu:0"):
            return {i["name"]: self.tf.constant(np.ascontiguousarray(feeds[i["name"]])) for i in self.native.inputs}

    def run(self, bound: dict) -> Any:
        """Eager TensorFlow (and a v1 session) on the CPU returns once its kernels ran; reading the values needs no
        further wait."""
        with self.tf.device("/cpu:0"):
            return self.call(bound)

    def to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        return {k: host_array(v.numpy() if hasattr(v, "numpy") else v) for k, v in result.items()}

    def close(self) -> None:
        if hasattr(self.keep, "close"):
            self.keep.close()
        self.call = self.keep = None


@register
class TensorFlow(Backend):
    name = "tensorflow"
    requires = {"tensorflow": "tensorflow-cpu"}
    extra = "tensorflow"
    consumes = "tensorflow"
    runs = ("tensorflow",)
    reference_for = "tensorflow"
    reference_title = "TensorFlow CPU"
    Options = TfOptions

    @classmethod
    def reference_infer(cls, model: Any):
        """The model's signature (or frozen graph) by TensorFlow on the CPU: {output: host array}."""
        session = TfSession(*load_callable(model), model)
        return session.infer

    @classmethod
    def reference_label(cls, model_kind: str) -> str:
        versions = cls.installed()[1]  # tensorflow-cpu, or another distribution of the module
        return f"tensorflow {next(iter(versions.values()), '')} fp32 cpu"

    @classmethod
    def skip_reason(cls, target: Target, options: TfOptions) -> str | None:
        if target.precision != "fp32":
            return "TensorFlow runs the model as saved (fp32); other precisions are built from its ONNX conversion"
        return None

    @classmethod
    def describe(cls, options: TfOptions, target: Target) -> dict[str, Any]:
        return {"threads": options.threads, "runs": "the model as saved, TensorFlow eager on the CPU"}

    def build(self, artifact: Artifact, target: Target) -> Session:
        session = TfSession(*load_callable(artifact.native, self.options.threads), artifact.native)
        from optbench.frameworks import tensorflow

        session.facts = {"tensorflow": {"version": tensorflow().__version__, "ran": artifact.native.describe()}}
        return session
