"""ONNX Runtime backend: CPU execution provider, and the CUDA EP with I/O binding on device buffers."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Lane, Session, Target, gather, host_array, register


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
    """``remake(stream)`` opens another session of the same file and options (a serving lane's), on the CUDA stream
    whose handle ``stream`` is where given; ``stream`` is this session's own compute stream (a torch CUDA stream,
    None where torch cannot make one): CUDA events recorded on it time the device."""

    def __init__(self, sess, device: str, end_to_end: bool, remake: Any = None, stream: Any = None) -> None:
        self.sess, self.device, self.end_to_end, self.remake, self.stream = sess, device, end_to_end, remake, stream
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

    def device_events(self) -> tuple | None:
        """A (start, end) pair of CUDA events recorded on the session's compute stream, or None without one."""
        if self.stream is None:
            return None
        import torch

        return (StreamEvent(torch, self.stream), StreamEvent(torch, self.stream))

    def close(self) -> None:
        self.sess = None

    def lane(self, pool: dict[str, np.ndarray], axes: dict, cuda_graphs: bool = False) -> Lane:
        if self.remake is None or cuda_graphs:
            return super().lane(pool, axes, cuda_graphs)
        return OrtLane(self, pool, axes)


class StreamEvent:
    """A torch CUDA event that records on one given stream (ORT's compute stream), as the timing loop records."""

    def __init__(self, torch: Any, stream: Any) -> None:
        self.event, self.stream = torch.cuda.Event(enable_timing=True), stream

    def record(self) -> None:
        self.event.record(self.stream)

    def elapsed_time(self, end: StreamEvent) -> float:
        return self.event.elapsed_time(end.event)


def torch_stream() -> tuple[Any, str | None]:
    """A new torch CUDA stream for ORT's CUDA EP to compute on (``user_compute_stream``), or None and why not."""
    try:
        import torch
    except ImportError as e:
        return None, f"torch cannot be imported to make a CUDA stream: {e}"
    if not torch.cuda.is_available():
        return None, "torch sees no CUDA device to make a stream on"
    return torch.cuda.Stream(), None


_TORCH_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
                "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(int8)": np.int8,
                "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


class OrtLane(Lane):
    """A serving lane of its own ONNX Runtime session (Triton's instance of an ONNX model). On the CPU: the pool in
    host memory, gathered per batch. On the CUDA EP, where torch can make a stream: the session computes on the
    lane's own stream (``user_compute_stream``), the pool is staged once on the GPU in the inputs' types, each
    batch's indices are copied asynchronously from pinned memory and its inputs gathered on the GPU into buffers
    bound once per batch size (I/O binding), so nothing crosses the bus but indices and outputs. Each batch size
    has a session of its own on the lane's stream: the CUDA EP keeps the convolution state of the last input shape
    a session saw and plans every convolution again when the shape changes (ResNet-50 fp16 on an H100: about
    140 ms a call when the sizes alternate, 4.8 ms at batch 32 when they do not), so a session that saw one shape
    only is never re-planned while it serves. Without torch, the lane's session takes host inputs (bound CPU inputs,
    copied by ORT)."""

    def __init__(self, session: OrtSession, pool: dict[str, np.ndarray], axes: dict) -> None:
        self.axes, self.device = axes, session.device
        names = set(session.input_names)
        self.types = {i.name: _TORCH_TYPES.get(i.type) for i in session.sess.get_inputs()}
        pool = {k: (v.astype(self.types[k]) if self.types.get(k) else v) for k, v in pool.items() if k in names}
        self.stream, self.why = (torch_stream() if self.device == "cuda" else (None, None))
        self.remake = session.remake
        self.sess = session.remake(self.stream)
        self.host = OrtSession(self.sess, self.device, end_to_end=True)
        self.pool, self.buffers, self.bindings, self.pinned = pool, {}, {}, {}
        self.sessions: dict[int, Any] = {}  # batch size -> its session (CUDA: one input shape per session)
        if self.stream is not None:
            import torch

            self.torch = torch
            with torch.cuda.stream(self.stream):
                self.pool = {k: torch.from_numpy(np.ascontiguousarray(v)).to("cuda") for k, v in pool.items()}
            self.run_options = _ort().RunOptions()
            self.run_options.add_run_config_entry("disable_synchronize_execution_providers", "1")

    def _binding(self, n: int) -> Any:
        """The I/O binding of batch size ``n``: input buffers on the GPU (filled by the gather), outputs on the GPU."""
        torch = self.torch
        sess = self.sessions[n] = self.sess if not self.sessions else self.remake(self.stream)
        binding = sess.io_binding()
        buffers = {}
        for name, t in self.pool.items():
            axis = self.axes.get(name, 0)
            shape = list(t.shape)
            if axis is not None:
                shape[axis] = n
            buf = buffers[name] = t if axis is None else torch.empty(shape, dtype=t.dtype, device=t.device)
            binding.bind_input(name, "cuda", 0, self.types[name], list(buf.shape), buf.data_ptr())
        for o in sess.get_outputs():
            binding.bind_output(o.name, "cuda", 0)
        self.buffers[n], self.bindings[n] = buffers, binding
        self.pinned[n] = torch.empty(n, dtype=torch.int64).pin_memory()
        return binding

    def run(self, index: np.ndarray) -> dict[str, np.ndarray]:
        if self.stream is None:
            return self.host.infer(gather(self.pool, self.axes, index))
        torch, n = self.torch, len(index)
        binding = self.bindings.get(n) or self._binding(n)
        with torch.cuda.stream(self.stream):
            pinned = self.pinned[n]
            pinned.numpy()[:] = index  # the last copy out of it finished: each batch ends with its outputs on the host
            i = pinned.to("cuda", non_blocking=True)
            for name, t in self.pool.items():
                if (axis := self.axes.get(name, 0)) is not None:
                    torch.index_select(t, axis, i, out=self.buffers[n][name])
            self.sessions[n].run_with_iobinding(binding, self.run_options)
            self.stream.synchronize()
            values = binding.copy_outputs_to_cpu()
        return {o.name: host_array(v) for o, v in zip(self.sess.get_outputs(), values)}

    def describe(self) -> dict[str, Any]:
        if self.stream is None:
            return {"lane": f"its own ONNX Runtime session ({self.device})", "staging": "host memory, gathered per "
                    "batch" + (f"; not on the GPU: {self.why}" if self.why else "")}
        return {"lane": "its own ONNX Runtime sessions, one per batch size (each sees one input shape: the CUDA EP "
                        "re-plans its convolutions when a session's shape changes), on the lane's own CUDA stream "
                        "(user_compute_stream)",
                "staging": "GPU tensors, once; inputs gathered on the GPU into buffers bound per batch size; indices "
                           "from pinned memory"}

    def close(self) -> None:
        self.sess, self.host, self.pool, self.buffers, self.bindings, self.sessions = None, None, {}, {}, {}, {}


@register
class OnnxRuntime(Backend):
    name = "onnxruntime"
    requires = {"onnxruntime": "onnxruntime"}
    extra = None
    consumes = "onnx"
    explained = "onnx"
    triton_platform = "onnxruntime_onnx"
    # not onnxsim: importing it imports torch wherever torch is installed (its optional PPQ hook); the export that
    # simplifies a graph imports it where it runs
    preload = ("onnxruntime", "onnx", "onnxruntime.quantization", "sympy", "optbench.backends.onnxruntime")
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

        def open_session(stream: Any = None) -> Any:
            if o.provider == "cuda":
                cuda = {"cudnn_conv_algo_search": o.cudnn_conv_algo_search, "prefer_nhwc": str(int(o.prefer_nhwc)),
                        "enable_cuda_graph": str(int(o.cuda_graph)), "use_tf32": str(int(o.tf32))}
                if stream is not None:
                    cuda["user_compute_stream"] = str(stream.cuda_stream)
                providers: list = [("CUDAExecutionProvider", cuda), "CPUExecutionProvider"]
            else:
                providers = ["CPUExecutionProvider"]
            sess = ort.InferenceSession(str(artifact.onnx_path), so, providers=providers)
            if o.provider == "cuda" and sess.get_providers()[0] != "CUDAExecutionProvider":
                raise RuntimeError(f"onnxruntime did not enable the CUDA EP (got {sess.get_providers()})")
            return sess

        # the CUDA EP computes on a stream of the session's own (where torch can make one): device time is CUDA
        # events on it, as torch rows have
        if o.provider != "cuda":
            return OrtSession(open_session(), o.provider, o.end_to_end, open_session)
        stream, why = (None, "not with the CUDA EP's graph option") if o.cuda_graph else torch_stream()
        try:
            sess = open_session(stream)
        except Exception as e:  # a stream the EP refuses: the session runs on its own, and the row says why
            sess, stream, why = open_session(), None, f"the CUDA EP refused a user compute stream: {e}"[:300]
        # lanes of their own sessions, except under the CUDA EP's graph, which holds one shape and one set of buffers
        session = OrtSession(sess, o.provider, o.end_to_end, None if o.cuda_graph else open_session, stream)
        session.facts = {"gpu_time": "CUDA events on the session's own compute stream (user_compute_stream)"
                         if stream is not None else f"none: {why}"}
        return session
