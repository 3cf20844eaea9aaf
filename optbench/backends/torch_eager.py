"""PyTorch eager backend (CPU, CUDA) under ``torch.inference_mode``."""

from __future__ import annotations

import threading
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Lane, Session, Target, register

_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


def cuda_available() -> bool:
    """Whether torch sees a CUDA device; checks for a driver first so CPU hosts never import torch here."""
    import os
    import shutil

    if not (os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi")):
        return False
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def only_reason(target: Target, options: TorchOptions) -> str | None:
    """Why ``options.only`` leaves this precision/batch out, or None when it is kept."""
    import fnmatch

    key = f"{target.precision}.bs{target.batch_size}"
    if options.only and not any(fnmatch.fnmatch(key, p) for p in options.only):
        return f"{key} restricted by options.only to {options.only}"
    return None


class TorchOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when present, else cpu.")
    cast: Literal["weights", "autocast"] = Field(
        "weights", description="fp16/bf16 by casting the module and inputs, or by torch.autocast (fp32 weights).")
    tf32: bool = Field(False, description="Allow TF32 matmul/conv for fp32 on CUDA.")
    channels_last: bool = Field(False, description="channels_last memory format (convnets).")
    threads: int | None = Field(None, ge=1, description="torch.set_num_threads on CPU; torch's default when absent.")
    cudnn_benchmark: bool = Field(
        False, description="torch.backends.cudnn.benchmark on CUDA: cuDNN times its convolution algorithms for each "
                           "new input shape during warm-up and keeps the fastest (the default picks by heuristics).")
    only: list[str] | None = Field(
        None, description="Variant-id patterns (fnmatch on 'precision.bsN') this backend runs; others are planned as "
                          "skipped (for expensive modes or one-off settings).")


class TorchSession(Session):
    names_outputs = False  # a torch module's outputs, flattened: paired with the reference's by position

    def __init__(self, module, device: str, dtype, autocast: bool, channels_last: bool) -> None:
        import torch

        self.torch, self.device, self.dtype, self.autocast = torch, torch.device(device), dtype, autocast
        self.channels_last = channels_last
        self.module = module
        # what the session holds after the cast (fp16/bf16 halve it; autocast keeps fp32 weights)
        self.artifact_bytes = int(sum(t.numel() * t.element_size()
                                      for t in list(module.parameters()) + list(module.buffers())))

    def prepare(self, feeds: dict[str, np.ndarray]) -> dict:
        bound = {}
        for k, v in feeds.items():
            t = self.torch.from_numpy(np.ascontiguousarray(v)).to(self.device)
            if t.is_floating_point() and not self.autocast:
                t = t.to(self.dtype)
            if self.channels_last and t.dim() == 4:
                t = t.contiguous(memory_format=self.torch.channels_last)
            bound[k] = t
        return bound

    def run(self, bound: dict) -> Any:
        with self.torch.inference_mode():
            if self.autocast:
                with self.torch.autocast(self.device.type, dtype=self.dtype):
                    return self.module(*bound.values())
            return self.module(*bound.values())

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            self.torch.cuda.synchronize(self.device)

    def to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        from optbench.outputs import torch_to_numpy

        return torch_to_numpy(result)

    def device_events(self):
        """A fresh (start, end) CUDA event pair for device time, or None on the CPU."""
        if self.device.type != "cuda":
            return None
        return (self.torch.cuda.Event(enable_timing=True), self.torch.cuda.Event(enable_timing=True))

    def device_peak_bytes(self) -> int | None:
        if self.device.type != "cuda":
            return None
        return int(self.torch.cuda.max_memory_allocated(self.device))

    def close(self) -> None:
        self.module = None
        if self.device.type == "cuda":
            self.torch.cuda.empty_cache()

    def lane(self, pool: dict[str, np.ndarray], axes: dict, cuda_graphs: bool = False) -> Lane:
        return TorchLane(self, pool, axes, cuda_graphs)


_CAPTURE = threading.Lock()  # CUDA graph captures of a process, one at a time


class TorchLane(Lane):
    """A serving lane of a torch session: the pool staged once on the session's device (in the session's dtype;
    4-D inputs of a channels_last session kept NHWC, so a gathered batch is channels_last without a copy); each
    batch's indices copied asynchronously from pinned memory on the lane's own CUDA stream, its inputs gathered on
    the device, the module run there, and the outputs copied back, which waits for that stream alone. With
    ``cuda_graphs`` on CUDA, the lane captures one CUDA graph per batch size the first time it runs that size (its
    warm-up) and replays it after: gather, model and all, one launch."""

    def __init__(self, session: TorchSession, pool: dict[str, np.ndarray], axes: dict, cuda_graphs: bool) -> None:
        import contextlib

        torch = self.torch = session.torch
        self.session, self.axes, self.cuda = session, axes, session.device.type == "cuda"
        if cuda_graphs and not self.cuda:
            raise ValueError("serving.cuda_graphs needs a CUDA device; this session runs on the CPU")
        self.stream = torch.cuda.Stream(session.device) if self.cuda else None
        self.on_stream = (lambda: torch.cuda.stream(self.stream)) if self.cuda else contextlib.nullcontext
        self.graphs: dict[int, tuple] | None = {} if cuda_graphs else None
        self.graph_pool = torch.cuda.graph_pool_handle() if cuda_graphs else None
        self.pinned: dict[int, Any] = {}
        self.pool, self.nhwc = {}, set()
        with self.on_stream():
            for name, arr in pool.items():
                t = torch.from_numpy(np.ascontiguousarray(arr))
                if t.is_floating_point() and not session.autocast:
                    t = t.to(session.dtype)
                if session.channels_last and t.dim() == 4 and axes.get(name, 0) == 0:
                    self.nhwc.add(name)
                    t = t.permute(0, 2, 3, 1).contiguous()
                self.pool[name] = t.to(session.device)

    def _feeds(self, index) -> dict:
        out = {}
        for name, t in self.pool.items():
            axis = self.axes.get(name, 0)
            if axis is None:
                out[name] = t
                continue
            g = t.index_select(axis, index)
            out[name] = g.permute(0, 3, 1, 2) if name in self.nhwc else g
        return out

    def _index(self, index: np.ndarray):
        """The indices where the gather reads them: pinned host memory on CUDA (copied from asynchronously)."""
        if not self.cuda:
            return self.torch.from_numpy(np.ascontiguousarray(index, dtype=np.int64))
        buf = self.pinned.get(len(index))
        if buf is None:
            buf = self.pinned[len(index)] = self.torch.empty(len(index), dtype=self.torch.int64).pin_memory()
        buf.numpy()[:] = index  # the last copy out of it finished: each batch ends waiting for its outputs
        return buf

    def _graph(self, n: int) -> tuple:
        """Capture batch size ``n``: one lane at a time, and in thread-local mode, so that another lane's work
        (its allocations, its synchronizations) neither breaks this capture nor is refused while it runs."""
        torch = self.torch
        with _CAPTURE:
            static = torch.zeros(n, dtype=torch.int64, device=self.session.device)
            for _ in range(2):  # warm on the lane's stream before capture, as CUDA graph capture asks
                self.session.run(self._feeds(static))
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.graph_pool, stream=self.stream, capture_error_mode="thread_local"):
                out = self.session.run(self._feeds(static))
        self.graphs[n] = (graph, static, out)
        return self.graphs[n]

    def run(self, index: np.ndarray) -> dict[str, np.ndarray]:
        with self.on_stream():
            i = self._index(index)
            if self.graphs is None:
                out = self.session.run(self._feeds(i.to(self.session.device, non_blocking=True)))
            else:
                graph, static, out = self.graphs.get(len(index)) or self._graph(len(index))
                static.copy_(i, non_blocking=True)
                graph.replay()
            return self.session.to_numpy(out)  # the copy to the host waits for this lane's stream only

    def describe(self) -> dict[str, Any]:
        return {"lane": "the session's module on its own CUDA stream" if self.cuda else
                "the session's module, called from the lane's own thread",
                "staging": f"{self.session.device.type} tensors, once" + (", indices from pinned memory" if
                                                                           self.cuda else ""),
                "cuda_graphs": self.graphs is not None}

    def compiles(self) -> int | None:
        """Frames torch.compile compiled in this process (dynamo's counter), or None where dynamo was never used."""
        import sys

        utils = sys.modules.get("torch._dynamo.utils")
        return None if utils is None else int(utils.counters["frames"]["total"])

    def close(self) -> None:
        self.pool, self.graphs, self.pinned = {}, None, {}


@register
class TorchEager(Backend):
    name = "torch"
    captures_cuda_graphs = True
    requires = {"torch": "torch", "torchvision": "torchvision"}
    imports = ("torch",)
    extra = "torch"
    consumes = "torch"
    explained = "module"
    preload = ("numpy", "torch", "torch.onnx", "torch_pruning", "optbench.backends.torch_eager")
    reference_for = "torch"
    reference_title = "torch"

    @classmethod
    def reference_infer(cls, model: Any):
        """The module in fp32 on the CPU under inference mode: {output: host array} (tuples and dicts flattened)."""
        import torch

        from optbench.outputs import torch_to_numpy

        def infer(feeds):
            with torch.inference_mode():
                return torch_to_numpy(model(*(torch.from_numpy(v) for v in feeds.values())))
        return infer
    Options = TorchOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return cls.import_reason()

    @classmethod
    def device_of(cls, options: TorchOptions) -> str:
        return ("cuda" if cuda_available() else "cpu") if options.device == "auto" else options.device

    @classmethod
    def skip_reason(cls, target: Target, options: TorchOptions) -> str | None:
        if target.device == "cuda" and not cuda_available():
            return "no CUDA device visible to torch"
        if target.precision == "int8":
            return "torch eager has no int8 execution path; int8 runs as Q/DQ ONNX on onnxruntime or TensorRT"
        if target.precision == "fp16" and target.device == "cpu":
            return "fp16 on CPU torch has no fast kernels (use bf16 on CPU, fp16 on CUDA)"
        return only_reason(target, options)

    @classmethod
    def describe(cls, options: TorchOptions, target: Target) -> dict[str, Any]:
        how = "fp32" if target.precision == "fp32" else f"{options.cast} {target.precision}"
        d = {"precision_mode": how}
        if target.device == "cuda":
            d["tf32"] = options.tf32
            d["cudnn_benchmark"] = options.cudnn_benchmark
        if options.channels_last:
            d["channels_last"] = True
        return d

    def build(self, artifact: Artifact, target: Target) -> Session:
        import torch

        o = self.options
        if o.threads and target.device == "cpu":
            torch.set_num_threads(o.threads)
        if target.device == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = o.tf32
            torch.backends.cudnn.allow_tf32 = o.tf32
            torch.backends.cudnn.benchmark = o.cudnn_benchmark  # one process per variant: it cannot leak
        dtype = getattr(torch, _DTYPES[target.precision])
        module = artifact.module.to(target.device)
        if target.precision != "fp32" and o.cast == "weights":
            module = module.to(dtype)
        if o.channels_last:
            module = module.to(memory_format=torch.channels_last)
        return TorchSession(module.eval(), target.device, dtype, o.cast == "autocast" and target.precision != "fp32",
                            o.channels_last)
