"""ncnn backend: the ONNX file converted by pnnx (the converter ncnn ships, run as its command-line tool) to an
ncnn param/bin pair, run by ncnn's Python bindings on the CPU.

ncnn runs one item at a time (its blobs have no batch dimension): a call at batch B runs B extractions, as an
app on a phone does. fp32: fp32 weights, fp16 storage and arithmetic off. fp16: pnnx writes fp16 weights and
ncnn stores (``fp16_storage``) and, where the CPU has fp16 arithmetic (ARMv8.2), computes (``fp16_arithmetic``)
in fp16; on x86 ncnn falls back to fp32 arithmetic, which the row records. int8 is planned as skipped: ncnn's
calibration tools (``ncnn2table``, ``ncnn2int8``) are not in its wheels.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, artifact_cache, register


class NcnnOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    threads: int | None = Field(None, ge=1, description="opt.num_threads; absent: the CPUs this process may run on.")
    fp16_arithmetic: bool = Field(True, description="fp16 variants: fp16 arithmetic where the CPU has it.")
    packing: bool = Field(True, description="opt.use_packing_layout (SIMD-friendly blob layout).")


def pnnx_tool() -> str | None:
    try:
        import pnnx
    except ImportError:
        return shutil.which("pnnx")
    exe = Path(pnnx.__file__).parent / "pnnx"
    return str(exe) if exe.exists() else shutil.which("pnnx")


class NcnnSession(Session):
    def __init__(self, net, ncnn, inputs: list[tuple[str, str, int]], outputs: list[tuple[str, str]], nbytes: int,
                 facts: dict) -> None:
        self.net, self.ncnn = net, ncnn
        self.inputs, self.outputs = inputs, outputs  # (model name, ncnn blob, batch axis); (model name, ncnn blob)
        self.artifact_bytes, self.facts = nbytes, facts

    def prepare(self, feeds: dict[str, np.ndarray]) -> list[list]:
        """Per item, an ncnn.Mat per input (the numpy arrays kept alive beside them)."""
        n = feeds[self.inputs[0][0]].shape[self.inputs[0][2]]
        items = []
        for i in range(n):
            arrays = [np.ascontiguousarray(np.take(feeds[name], i, axis=axis)) for name, _, axis in self.inputs]
            items.append((arrays, [self.ncnn.Mat(a) for a in arrays]))
        return items

    def run(self, bound: list) -> list:
        out = []
        for _, mats in bound:
            ex = self.net.create_extractor()
            for (_, blob, _), mat in zip(self.inputs, mats):
                ex.input(blob, mat)
            got = []
            for _, blob in self.outputs:
                ret, m = ex.extract(blob)
                if ret != 0:
                    raise RuntimeError(f"ncnn could not extract {blob} (code {ret})")
                got.append(np.array(m))
            out.append(got)
        return out

    def to_numpy(self, result: list) -> dict[str, np.ndarray]:
        return {name: np.stack([item[j] for item in result]).astype(np.float32)
                for j, (name, _) in enumerate(self.outputs)}

    def close(self) -> None:
        self.net = None


@register
class Ncnn(Backend):
    name = "ncnn"
    requires = {"ncnn": "ncnn", "pnnx": "pnnx"}
    imports = ("ncnn",)  # pnnx is a command-line converter (see pnnx_tool)
    extra = "ncnn"
    consumes = "onnx"
    explained = "onnx"
    Options = NcnnOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if why := cls.import_reason():
            return why
        if pnnx_tool() is None:
            return "pnnx, the converter, is not installed (install the 'ncnn' extra)"
        return None

    @classmethod
    def skip_reason(cls, target: Target, options: NcnnOptions) -> str | None:
        if target.precision == "int8":
            return "ncnn int8 needs ncnn2table/ncnn2int8, which ncnn's wheels do not ship"
        if target.precision == "bf16":
            return "ncnn has no bf16 path on this CPU here (fp32 and fp16 storage)"
        return None

    @classmethod
    def onnx_precision(cls, target: Target, options: NcnnOptions) -> str:
        return "fp32"  # pnnx converts the fp32 graph; fp16 weights are its own option

    @classmethod
    def describe(cls, options: NcnnOptions, target: Target) -> dict[str, Any]:
        return {"converter": "pnnx", "execution": "one item per extraction (ncnn blobs have no batch axis)",
                "fp16_storage": target.precision == "fp16",
                "fp16_arithmetic": target.precision == "fp16" and options.fp16_arithmetic}

    def build(self, artifact: Artifact, target: Target) -> Session:
        import ncnn

        from optbench.backends.onnxruntime import default_threads
        from optbench.digest import file_digest

        axes = {i.name: (i.shape.index("batch") if "batch" in i.shape else None) for i in artifact.inputs}
        if any(a is None for a in axes.values()):
            raise ValueError("ncnn runs one item at a time: every input needs a batch axis")
        names = list(axes)
        shapes = {n: [1 if k == axes[n] else d for k, d in enumerate(np.asarray(artifact.sample[n]).shape)] for n in names}
        fp16 = target.precision == "fp16"
        cache = artifact_cache(artifact)
        key = cache.key("ncnn", [file_digest(Path(artifact.onnx_path)), shapes, fp16, _version()])
        param, _ = cache.get_or_build(key, "model.ncnn.param",
                                      lambda folder: _convert(Path(artifact.onnx_path), names, shapes, fp16, folder))
        cache.verify(param)
        facts = json.loads((param.parent / "facts.json").read_text())
        net = ncnn.Net()
        o = self.options
        net.opt.num_threads = o.threads or default_threads()
        net.opt.use_packing_layout = o.packing
        net.opt.use_fp16_storage = net.opt.use_fp16_packed = fp16
        net.opt.use_fp16_arithmetic = fp16 and o.fp16_arithmetic
        net.opt.use_bf16_storage = False
        if net.load_param(str(param)) != 0 or net.load_model(str(param.with_suffix(".bin"))) != 0:
            raise RuntimeError(f"ncnn could not load {param}")
        blobs_in, blobs_out = list(net.input_names()), list(net.output_names())
        outputs = facts["outputs"]
        if len(blobs_in) != len(names) or len(blobs_out) != len(outputs):
            raise RuntimeError(f"ncnn's blobs {blobs_in} -> {blobs_out} do not match the model's inputs {names} and "
                               f"outputs {outputs}")
        nbytes = param.stat().st_size + param.with_suffix(".bin").stat().st_size
        facts["fp16_arithmetic_in_effect"] = bool(net.opt.use_fp16_arithmetic and _cpu_has_fp16_arithmetic())
        return NcnnSession(net, ncnn, [(n, b, axes[n]) for n, b in zip(names, blobs_in)],
                           list(zip(outputs, blobs_out)), nbytes, {"ncnn": facts})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"ncnn {version('ncnn')}, pnnx {version('pnnx')}"
    except PackageNotFoundError:
        return "unknown"


def _cpu_has_fp16_arithmetic() -> bool:
    """ARMv8.2 fp16 (asimdhp); x86 CPUs compute ncnn's fp16 storage in fp32."""
    try:
        return "asimdhp" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def _convert(onnx_path: Path, names: list[str], shapes: dict[str, list[int]], fp16: bool, folder: Path) -> None:
    """pnnx model.onnx inputshape=[...] fp16=0|1, in the artifact's folder (it writes beside its input)."""
    import onnx

    tool = pnnx_tool()
    src = folder / "model.onnx"
    shutil.copyfile(onnx_path, src)
    shape_arg = ",".join("[" + ",".join(str(d) for d in shapes[n]) + "]" for n in names)
    proc = subprocess.run([tool, str(src), f"inputshape={shape_arg}", f"fp16={int(fp16)}"], cwd=folder,
                          capture_output=True, text=True, timeout=600, env={**os.environ})
    if proc.returncode != 0 or not (folder / "model.ncnn.param").exists():
        tail = (proc.stderr or proc.stdout)[-800:]
        raise RuntimeError(f"pnnx could not convert the ONNX file (exit {proc.returncode}): {tail}")
    outputs = [o.name for o in onnx.load(str(src), load_external_data=False).graph.output]
    layers = (folder / "model.ncnn.param").read_text().splitlines()[2:]
    kinds: dict[str, int] = {}
    for line in layers:
        kind = line.split()[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    for extra in folder.iterdir():  # keep the ncnn pair and what describes it
        if extra.name not in ("model.ncnn.param", "model.ncnn.bin"):
            extra.unlink() if extra.is_file() else shutil.rmtree(extra)
    (folder / "facts.json").write_text(json.dumps({"outputs": outputs, "layers": len(layers), "layer_types": kinds,
                                                   "weights": "fp16" if fp16 else "fp32"}))
