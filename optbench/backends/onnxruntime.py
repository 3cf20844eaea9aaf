"""ONNX Runtime backend: CPU execution provider, and the CUDA EP with I/O binding on device buffers."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, host_array, register


class OrtOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    provider: Literal["cpu", "cuda"] = Field("cpu", description="Execution provider.")
    threads: int | None = Field(
        None, ge=1, description="intra_op_num_threads. Absent: the CPUs this process may run on (its affinity: "
                                "taskset, cgroup cpusets), where ORT alone would start one thread per core of "
                                "the machine and oversubscribe a restricted process.")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field("all", description="ORT graph optimization level.")
    end_to_end: bool = Field(False, description="CUDA: time host→device copies too (no I/O binding of inputs).")
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "HEURISTIC", description="CUDA EP convolution algorithm search.")
    prefer_nhwc: bool = Field(False, description="CUDA EP NHWC layout for convolutions.")
    cuda_graph: bool = Field(False, description="CUDA EP: capture the run in a CUDA graph (static shapes only).")
    tf32: bool = Field(
        False, description="CUDA EP use_tf32: TF32 math for fp32 convolutions and matmuls. ONNX Runtime's own default "
                           "is on; optbench's is off, so fp32 means fp32 on every backend unless a spec says otherwise.")


def default_threads() -> int:
    """CPUs this process may run on."""
    import os

    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _ort():
    import onnxruntime

    return onnxruntime


def cuda_provider_reason() -> str | None:
    try:
        ort = _ort()
    except ImportError as e:
        return f"onnxruntime cannot be imported: {e}"
    if hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception:
            pass
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (f"this onnxruntime build ({ort.__version__}) has no CUDAExecutionProvider; "
                "install the 'gpu' extra (onnxruntime-gpu)")
    return None


class OrtSession(Session):
    def __init__(self, sess, device: str, end_to_end: bool) -> None:
        self.sess, self.device, self.end_to_end = sess, device, end_to_end
        self.input_names = [i.name for i in sess.get_inputs()]
        self.output_names = [o.name for o in sess.get_outputs()]

    def prepare(self, feeds: dict[str, np.ndarray]) -> Any:
        feeds = {k: np.ascontiguousarray(v) for k, v in feeds.items() if k in self.input_names}
        if self.device == "cpu":
            return feeds
        ort = _ort()
        binding = self.sess.io_binding()
        for name, arr in feeds.items():
            if self.end_to_end:
                binding.bind_cpu_input(name, arr)
            else:
                binding.bind_ortvalue_input(name, ort.OrtValue.ortvalue_from_numpy(arr, "cuda", 0))
        for name in self.output_names:
            binding.bind_output(name, "cuda", 0)
        return binding

    def run(self, bound: Any) -> Any:
        if self.device == "cpu":
            return self.sess.run(self.output_names, bound)
        self.sess.run_with_iobinding(bound)
        return bound

    def synchronize(self) -> None:
        """ORT's run returns after its stream finished (CPU) or was synchronized (CUDA EP default)."""

    def to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        values = result if self.device == "cpu" else [o.numpy() for o in result.get_outputs()]
        return {n: host_array(v) for n, v in zip(self.output_names, values)}

    def close(self) -> None:
        self.sess = None


@register
class OnnxRuntime(Backend):
    name = "onnxruntime"
    requires = {"onnxruntime": "onnxruntime"}
    extra = None
    consumes = "onnx"
    explained = "onnx"
    preload = ("onnxruntime", "onnx", "onnxruntime.quantization", "onnxsim", "sympy", "optbench.backends.onnxruntime")
    reference_for = "onnx"
    second_opinion = True
    reference_title = "ONNX Runtime CPU"

    @classmethod
    def reference_infer(cls, model: Any):
        """ONNX Runtime CPU inference of a model file: {output name: host array}, in the graph's order."""
        ort = _ort()
        sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        names = {i.name for i in sess.get_inputs()}
        outputs = [o.name for o in sess.get_outputs()]

        def infer(feeds):
            values = sess.run(outputs, {k: v for k, v in feeds.items() if k in names})
            return {n: host_array(v) for n, v in zip(outputs, values)}
        return infer

    @classmethod
    def reference_label(cls, model_kind: str) -> str:
        return "onnxruntime fp32 cpu of the ONNX file as given (no torch model: no noise floor)"
    Options = OrtOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return cls.import_reason()

    @classmethod
    def device_of(cls, options: OrtOptions) -> str:
        return options.provider

    @classmethod
    def skip_reason(cls, target: Target, options: OrtOptions) -> str | None:
        if options.provider == "cuda" and (why := cuda_provider_reason()):
            return why
        if target.precision == "bf16":
            return "onnxruntime has no bf16 kernels for most ops on its CPU/CUDA EPs; use fp16 or TensorRT"
        if target.precision == "int8" and options.provider == "cuda":
            return "the CUDA EP has no int8 kernels: a Q/DQ model would fall back to the CPU (use TensorRT)"
        return None

    @classmethod
    def describe(cls, options: OrtOptions, target: Target) -> dict[str, Any]:
        d: dict[str, Any] = {"provider": options.provider, "graph_optimization": options.graph_optimization}
        if options.provider == "cpu":
            d["threads"] = options.threads or default_threads()
        else:
            d.update(io_binding=not options.end_to_end, cudnn_conv_algo_search=options.cudnn_conv_algo_search,
                     prefer_nhwc=options.prefer_nhwc, cuda_graph=options.cuda_graph, tf32=options.tf32)
        return d

    def build(self, artifact: Artifact, target: Target) -> Session:
        ort = _ort()
        o = self.options
        so = ort.SessionOptions()
        so.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[o.graph_optimization]
        if o.provider == "cpu":
            so.intra_op_num_threads = o.threads or default_threads()
        so.log_severity_level = 3
        if o.provider == "cuda":
            cuda = {"cudnn_conv_algo_search": o.cudnn_conv_algo_search, "prefer_nhwc": str(int(o.prefer_nhwc)),
                    "enable_cuda_graph": str(int(o.cuda_graph)), "use_tf32": str(int(o.tf32))}
            providers: list = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        sess = ort.InferenceSession(str(artifact.onnx_path), so, providers=providers)
        if o.provider == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"onnxruntime did not enable the CUDA EP (got {sess.get_providers()})")
        return OrtSession(sess, o.provider, o.end_to_end)
