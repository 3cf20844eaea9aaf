"""TensorRT backend: ONNX → engine (fp32/TF32, fp16, bf16, int8), one optimization profile per dynamic range.

The translation from a variant to builder settings (:func:`plan_build`) is pure Python and unit-tested;
:class:`TensorRT.build` applies it through the documented TensorRT 10/11 Python API (``Builder``,
``OnnxParser``, ``IBuilderConfig``, ``IOptimizationProfile``, ``execute_async_v3``). Where ``tensorrt``
cannot be imported the backend is unavailable with the reason, and its variants are planned as skipped.

int8: explicit quantization (a Q/DQ ONNX from the int8 settings; TensorRT needs symmetric S8 activations,
so ``activations: s8`` or ``mode: modelopt``) or, where the installed TensorRT still has it (< 11) and the
network is weakly typed, implicit calibration fed from the calibration split with a calibration cache.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, artifact_cache, register
from optbench.digest import file_digest


class TrtOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    workspace_mb: int = Field(4096, ge=16, description="Builder workspace memory pool limit (MiB).")
    optimization_level: int = Field(3, ge=0, le=5, description="builder_optimization_level (0-5).")
    tf32: bool = Field(True, description="Allow TF32 for fp32 variants.")
    sparsity: bool = Field(False, description="Allow 2:4 structured-sparse kernels (SPARSE_WEIGHTS).")
    cuda_graph: bool = Field(False, description="Capture execute_async_v3 in a CUDA graph (static shapes).")
    timing_cache: bool = Field(True, description="Reuse a timing cache kept beside the engines.")
    typing: Literal["auto", "strong", "weak"] = Field(
        "auto", description="auto: strongly typed on TensorRT >= 11 (its default), weakly typed before.")
    int8_calibration: Literal["explicit", "implicit"] = Field(
        "explicit", description="int8 from Q/DQ ONNX (explicit) or builder calibration (implicit; TensorRT < 11, weak typing).")


def _trt():
    try:
        import tensorrt as trt

        return trt, "tensorrt"
    except ImportError:
        import tensorrt_rtx as trt  # TensorRT for RTX: same API, RTX GPUs only

        return trt, "tensorrt_rtx"


def compute_capability() -> tuple[int, int] | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.split()
        major, minor = out[0].split(".")
        return int(major), int(minor)
    except (OSError, subprocess.TimeoutExpired, IndexError, ValueError):
        return None


def unavailable(flavour_probe=_trt, cc_probe=compute_capability) -> str | None:
    try:
        trt, flavour = flavour_probe()
    except ImportError:
        return "tensorrt cannot be imported (install the 'tensorrt' extra on a CUDA host)"
    if flavour == "tensorrt_rtx" and cc_probe() == (9, 0):
        return ("only TensorRT-RTX is installed, and it refuses compute capability 9.0 (H100/H200); install tensorrt "
                "(`optbench build` still builds engines with it)")
    if cc_probe() is None:
        return (f"{flavour} {getattr(trt, '__version__', '?')} is installed but no NVIDIA GPU is visible to run "
                "engines (`optbench build` builds them here)")
    return None


def build_unavailable(flavour_probe=_trt) -> str | None:
    """Engines build wherever the builder imports: TensorRT-RTX compiles ahead of time on a machine without a GPU."""
    try:
        flavour_probe()
    except ImportError:
        return "neither tensorrt nor tensorrt_rtx can be imported (install the 'tensorrt' extra)"
    return None


@dataclass
class BuildPlan:
    """Everything the builder is told, recorded beside the engine and in the row."""

    trt_major: int
    strongly_typed: bool
    onnx_precision: str                      # which ONNX the backend consumes: fp32 | fp16 | int8 (Q/DQ)
    builder_flags: list[str] = field(default_factory=list)
    network_flags: list[str] = field(default_factory=list)
    profiles: dict[str, tuple[list[int], list[int], list[int]]] = field(default_factory=dict)
    workspace_bytes: int = 0
    optimization_level: int = 3
    calibrator: bool = False
    timing_cache: bool = True
    cuda_graph: bool = False


def profile_for(inputs: list, points: list[tuple[int, dict[str, int]]]) -> dict[str, tuple[list[int], list[int], list[int]]]:
    """min / opt / max per input over the spec's (batch, dims) points; opt is the upper median of each dim."""
    out = {}
    for inp in inputs:
        mins, opts, maxs = [], [], []
        for d in inp.shape:
            if isinstance(d, int):
                mins.append(d), opts.append(d), maxs.append(d)
                continue
            values = sorted({b if d == "batch" else dims[d] for b, dims in points})
            mins.append(values[0]), opts.append(values[len(values) // 2]), maxs.append(values[-1])
        out[inp.name] = (mins, opts, maxs)
    return out


def plan_build(options: TrtOptions, target: Target, inputs: list, points: list, trt_major: int) -> BuildPlan:
    """Translate a variant into TensorRT builder settings (raises ValueError for impossible combinations).
    ``trt_major`` is the API generation: TensorRT's major version, 11 for TensorRT-RTX (strongly typed
    networks only, no precision flags, no implicit calibration, like TensorRT 11)."""
    if trt_major >= 11 and options.typing == "weak":
        raise ValueError("this TensorRT builds strongly typed networks only (TensorRT 11, TensorRT-RTX): typing: weak "
                         "is not available")
    strong = {"strong": True, "weak": False, "auto": trt_major >= 11}[options.typing]
    p = target.precision
    plan = BuildPlan(trt_major, strong, "fp32", workspace_bytes=options.workspace_mb * 2**20,
                     optimization_level=options.optimization_level, timing_cache=options.timing_cache,
                     cuda_graph=options.cuda_graph, profiles=profile_for(inputs, points))
    if strong:
        plan.network_flags.append("STRONGLY_TYPED")
    if p == "int8":
        q = target.int8 or {}
        if options.int8_calibration == "implicit":
            if trt_major >= 11:
                raise ValueError("TensorRT 11 removed implicit int8 calibration; use int8_calibration: explicit")
            if strong:
                raise ValueError("implicit int8 calibration needs a weakly typed network (typing: weak)")
            plan.builder_flags += ["INT8", "FP16"]
            plan.calibrator = True
        else:
            if q.get("mode") == "static" and q.get("activations") == "u8":
                raise ValueError("TensorRT's explicit quantization needs symmetric S8 activations "
                                 "(int8 activations: s8, or mode: modelopt)")
            if q.get("mode") == "dynamic":
                raise ValueError("TensorRT has no dynamic (run-time) int8 quantization; use static or modelopt")
            if q.get("mode", "static") == "static" and (q.get("quantize_bias", True)
                                                         or not q.get("symmetric_activations", False)):
                raise ValueError("TensorRT takes symmetric 8-bit Q/DQ only (zero points 0, no int32 bias DQ): set int8 "
                                 "activations: s8, symmetric_activations: true, quantize_bias: false")
            plan.onnx_precision = "int8"
            if not strong:
                plan.builder_flags += ["INT8", "FP16"]
    elif p == "fp16":
        if strong:
            plan.onnx_precision = "fp16"  # types come from the graph: the fp16-converted ONNX
        else:
            plan.builder_flags.append("FP16")
    elif p == "bf16":
        if strong:
            raise ValueError("a strongly typed bf16 engine needs a bf16 ONNX graph, which optbench does not make; "
                             "use typing: weak (TensorRT 10)")
        plan.builder_flags.append("BF16")
    if p == "fp32" and options.tf32:
        plan.builder_flags.append("TF32")
    if options.sparsity:
        plan.builder_flags.append("SPARSE_WEIGHTS")
    return plan


def installed_major() -> int:
    """The API generation of the installed builder (see :func:`plan_build`)."""
    trt, flavour = _trt()
    return 11 if flavour == "tensorrt_rtx" else int(str(trt.__version__).split(".")[0])


@register
class TensorRT(Backend):
    name = "tensorrt"
    requires = {"tensorrt": "tensorrt", "tensorrt_rtx": "tensorrt-rtx"}
    requires_any = True  # TensorRT proper or TensorRT-RTX
    extra = "tensorrt"
    consumes = "onnx"
    explained = "onnx"
    Options = TrtOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return unavailable()

    @classmethod
    def build_unavailable_reason(cls) -> str | None:
        return build_unavailable()

    @classmethod
    def device_of(cls, options: BaseModel) -> str:
        return "cuda"

    @classmethod
    def skip_reason(cls, target: Target, options: TrtOptions) -> str | None:
        try:
            plan_build(options, target, [], [], installed_major())
        except ValueError as e:
            return str(e)
        return None

    @classmethod
    def onnx_precision(cls, target: Target, options: TrtOptions) -> str:
        return plan_build(options, target, [], [], installed_major()).onnx_precision

    @classmethod
    def describe(cls, options: TrtOptions, target: Target) -> dict[str, Any]:
        return {"workspace_mb": options.workspace_mb, "optimization_level": options.optimization_level,
                "typing": options.typing, "sparsity": options.sparsity, "cuda_graph": options.cuda_graph}

    def build(self, artifact: Artifact, target: Target) -> Session:
        trt, flavour = _trt()
        plan = plan_build(self.options, target, artifact.inputs, artifact.points or [(target.batch_size, target.dims)],
                          installed_major())
        cache = artifact_cache(artifact)
        key = cache.key("trt-engine", [str(artifact.onnx_path), asdict(plan), flavour, trt.__version__,
                                        file_digest(Path(artifact.onnx_path))])
        path, cached = cache.get_or_build(key, "model.engine", lambda d: _build_engine(trt, artifact, plan, d))
        return TrtSession(trt, path.read_bytes(), plan, artifact.inputs)

    def build_only(self, artifact: Artifact, target: Target) -> dict[str, Any]:
        """The engine, built and cached without deserializing it (no GPU needed with TensorRT-RTX): its bytes, the
        builder settings, the parsed network's layers and tensor types, and the engine inspector's layer
        information where a runtime can load the engine here (else the reason it cannot)."""
        trt, flavour = _trt()
        plan = plan_build(self.options, target, artifact.inputs, artifact.points or [(target.batch_size, target.dims)],
                          installed_major())
        cache = artifact_cache(artifact)
        key = cache.key("trt-engine", [str(artifact.onnx_path), asdict(plan), flavour, trt.__version__,
                                        file_digest(Path(artifact.onnx_path))])
        path, _ = cache.get_or_build(key, "model.engine", lambda d: _build_engine(trt, artifact, plan, d))
        network = json.loads((path.parent / "network.json").read_text()) if (path.parent / "network.json").exists() else {}
        facts = {"builder": f"{flavour} {trt.__version__}", "build_plan": asdict(plan), "network": network,
                 "engine_inspector": inspect_engine(trt, path.read_bytes())}
        return {"bytes": path.stat().st_size, "facts": {"tensorrt": facts}}


def _logger(trt):
    return trt.Logger(trt.Logger.WARNING)


def _build_engine(trt, artifact: Artifact, plan: BuildPlan, folder: Path) -> None:
    logger = _logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(artifact.onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse the ONNX file: {errors}")
    (folder / "network.json").write_text(json.dumps(network_facts(network), indent=1))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.builder_optimization_level = plan.optimization_level
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in plan.profiles.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    timing_path = Path(artifact.cache_dir or folder) / "trt-timing.cache"
    if plan.timing_cache:
        cache = config.create_timing_cache(timing_path.read_bytes() if timing_path.exists() else b"")
        config.set_timing_cache(cache, ignore_mismatch=False)
    if plan.calibrator:
        config.int8_calibrator = make_calibrator(trt, artifact, folder / "calibration.cache")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see the variant's log)")
    (folder / "model.engine").write_bytes(bytes(serialized))
    if plan.timing_cache:
        timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    (folder / "builder.json").write_text(json.dumps(asdict(plan), indent=1))


def network_facts(network) -> dict[str, Any]:
    """The parsed network as the builder sees it: layer count by type, output tensor types (a strongly typed
    network's precisions), inputs with their shapes."""
    by_type: dict[str, int] = {}
    dtypes: dict[str, int] = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        kind = str(layer.type).split(".")[-1]
        by_type[kind] = by_type.get(kind, 0) + 1
        for j in range(layer.num_outputs):
            dt = str(layer.get_output(j).dtype).split(".")[-1]
            dtypes[dt] = dtypes.get(dt, 0) + 1
    inputs = {network.get_input(i).name: list(network.get_input(i).shape) for i in range(network.num_inputs)}
    outputs = {network.get_output(i).name: str(network.get_output(i).dtype).split(".")[-1]
               for i in range(network.num_outputs)}
    return {"layers": network.num_layers, "layer_types": by_type, "tensor_types": dtypes, "inputs": inputs,
            "outputs": outputs}


def inspect_engine(trt, engine_bytes: bytes) -> dict[str, Any]:
    """The engine inspector's per-layer information (JSON), or why no runtime could load the engine here."""
    try:
        runtime = trt.Runtime(_logger(trt))
        engine = runtime.deserialize_cuda_engine(engine_bytes)
        if engine is None:
            return {"available": False, "reason": "the runtime could not deserialize the engine here (no usable GPU)"}
        info = engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON)
        layers = json.loads(info).get("Layers", [])
        return {"available": True, "layers": len(layers)}
    except Exception as e:  # a runtime without a device: the reason is the finding
        return {"available": False, "reason": f"{e.__class__.__name__}: {e}"[:300]}


def make_calibrator(trt, artifact: Artifact, cache_path: Path):
    """IInt8EntropyCalibrator2 over the calibration batches, with a calibration cache file."""
    import torch

    batches = artifact.calibration or []

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            self.index, self.buffers = 0, {}

        def get_batch_size(self) -> int:
            return len(next(iter(batches[0].values()))) if batches else 1

        def get_batch(self, names):
            if self.index >= len(batches):
                return None
            feeds = batches[self.index]
            self.index += 1
            self.buffers = {n: torch.from_numpy(np.ascontiguousarray(feeds[n])).cuda() for n in names}
            return [int(self.buffers[n].data_ptr()) for n in names]

        def read_calibration_cache(self):
            return cache_path.read_bytes() if cache_path.exists() else None

        def write_calibration_cache(self, cache) -> None:
            cache_path.write_bytes(bytes(cache))

    return Calibrator()


class TrtSession(Session):
    """Runs a deserialized engine with execute_async_v3 on device buffers (torch tensors) and one stream."""

    def __init__(self, trt, engine_bytes: bytes, plan: BuildPlan, inputs: list) -> None:
        import torch

        self.torch, self.plan = torch, plan
        self.runtime = trt.Runtime(_logger(trt))
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.input_names = [i.name for i in inputs]
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.trt = trt
        self.graph = None
        self.artifact_bytes = len(engine_bytes)  # the serialized engine, reported as the row's model_bytes

    def prepare(self, feeds: dict[str, np.ndarray]) -> dict:
        torch, trt = self.torch, self.trt
        bound = {}
        for name in self.names:
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                t = torch.from_numpy(np.ascontiguousarray(feeds[name])).cuda()
                self.context.set_input_shape(name, tuple(t.shape))
                bound[name] = t
        for name in self.names:
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.OUTPUT:
                shape = tuple(self.context.get_tensor_shape(name))
                dtype = {trt.float32: torch.float32, trt.float16: torch.float16}.get(
                    self.engine.get_tensor_dtype(name), torch.float32)
                bound[name] = torch.empty(shape, dtype=dtype, device="cuda")
        for name, t in bound.items():
            self.context.set_tensor_address(name, int(t.data_ptr()))
        self.graph = self._capture() if self.plan.cuda_graph else None
        return bound

    def _capture(self):
        """Record execute_async_v3 into a CUDA graph for these shapes and buffers (after one plain run,
        which lets TensorRT finish its shape-dependent setup outside the capture)."""
        torch = self.torch
        self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=self.stream):
            self.context.execute_async_v3(self.stream.cuda_stream)
        return graph

    def run(self, bound: dict) -> dict:
        if self.graph is not None:
            with self.torch.cuda.stream(self.stream):
                self.graph.replay()
        else:
            self.context.execute_async_v3(self.stream.cuda_stream)
        return bound

    def synchronize(self) -> None:
        self.stream.synchronize()

    def to_numpy(self, result: dict) -> dict[str, np.ndarray]:
        outputs = [n for n in self.names if self.engine.get_tensor_mode(n) == self.trt.TensorIOMode.OUTPUT]
        return {n: result[n].float().cpu().numpy() for n in outputs}

    def device_peak_bytes(self) -> int | None:
        """The engine's device memory for activations (device_memory_size_v2, TensorRT >= 10)."""
        size = getattr(self.engine, "device_memory_size_v2", None)
        return int(size) if size is not None else None
