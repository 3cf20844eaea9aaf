"""PyTorch eager backend (CPU, CUDA) under ``torch.inference_mode``."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, register

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


@register
class TorchEager(Backend):
    name = "torch"
    requires = {"torch": "torch", "torchvision": "torchvision"}
    imports = ("torch",)
    extra = None
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
