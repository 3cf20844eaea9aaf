"""Apache TVM backend: the ONNX file imported to Relax (``tvm.relax.frontend.onnx.from_onnx``), legalized and
compiled by LLVM for this host's CPU (the CPU LLVM names, e.g. znver4 or sapphirerapids), run by Relax's virtual
machine.

One shared library per batch/shape point (shapes are fixed at import, which lets LLVM specialise the loops),
kept in the artifact cache (its digests checked like every artifact before it is loaded). fp32 compiles the fp32
graph; fp16 is Relax's own ``ToMixedPrecision`` pass over it (fp16 tensors, fp32 accumulation), compiled by LLVM
for this CPU; int8 is planned as skipped. No auto-tuning: MetaSchedule would take minutes to hours per model; the rows say
``tuning: none``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, artifact_cache, host_array, register


class TvmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mcpu: str | None = Field(None, description="LLVM CPU to compile for; absent: this host's (LLVM's system CPU).")
    opt_level: int = Field(3, ge=0, le=3, description="PassContext opt_level.")


def _tvm():
    import tvm

    return tvm


def host_target(mcpu: str | None) -> dict[str, str]:
    from tvm.target import codegen

    return {"kind": "llvm", "mcpu": mcpu or codegen.llvm_get_system_cpu(), "mtriple": codegen.llvm_get_system_triple()}


class TvmSession(Session):
    def __init__(self, vm, device, input_names: list[str], output_names: list[str], nbytes: int, facts: dict) -> None:
        self.vm, self.device = vm, device
        self.input_names, self.output_names = input_names, output_names
        self.artifact_bytes, self.facts = nbytes, facts
        self.tvm = _tvm()

    def prepare(self, feeds: dict[str, np.ndarray]) -> list:
        return [self.tvm.runtime.tensor(np.ascontiguousarray(feeds[n]), self.device) for n in self.input_names]

    def run(self, bound: list) -> Any:
        return self.vm["main"](*bound)

    def to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        values = [result] if hasattr(result, "numpy") else list(result)
        return {n: host_array(v.numpy()) for n, v in zip(self.output_names, values)}

    def close(self) -> None:
        self.vm = None


@register
class Tvm(Backend):
    name = "tvm"
    requires = {"tvm": "apache-tvm"}
    imports = ("tvm", "tvm.relax.frontend.onnx")
    extra = "tvm"
    consumes = "onnx"
    explained = "onnx"
    Options = TvmOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if why := cls.import_reason():
            return why
        tvm = _tvm()
        return None if tvm.runtime.enabled("llvm") else f"tvm {tvm.__version__} was built without LLVM"

    @classmethod
    def skip_reason(cls, target: Target, options: TvmOptions) -> str | None:
        if target.precision in ("int8", "bf16"):
            return f"this backend compiles the fp32 and fp16 ONNX graphs; {target.precision} is not built"
        return None

    @classmethod
    def onnx_precision(cls, target: Target, options: TvmOptions) -> str:
        return "fp32"  # fp16 is TVM's own mixed-precision pass over the fp32 graph

    @classmethod
    def describe(cls, options: TvmOptions, target: Target) -> dict[str, Any]:
        d = {"compiler": "relax + LLVM", "tuning": "none", "shapes": "static: one library per batch/shape point",
             "opt_level": options.opt_level}
        if target.precision == "fp16":
            d["fp16_by"] = "relax.transform.ToMixedPrecision(out_dtype=float16)"
        return d

    def build(self, artifact: Artifact, target: Target) -> Session:
        import onnx

        from optbench.digest import file_digest

        tvm = _tvm()
        model = onnx.load(str(artifact.onnx_path), load_external_data=False)
        inputs = [i.name for i in model.graph.input
                  if i.name not in {init.name for init in model.graph.initializer}]
        outputs = [o.name for o in model.graph.output]
        shapes = {n: list(np.asarray(artifact.sample[n]).shape) for n in inputs}
        dtypes = {n: str(np.asarray(artifact.sample[n]).dtype) for n in inputs}
        tgt = host_target(self.options.mcpu)
        cache = artifact_cache(artifact)
        fp16 = target.precision == "fp16"
        key = cache.key("tvm", [file_digest(Path(artifact.onnx_path)), shapes, dtypes, tgt, self.options.model_dump(),
                                fp16, tvm.__version__])
        path, _ = cache.get_or_build(key, "model.so",
                                     lambda folder: self._compile(artifact, shapes, dtypes, tgt, fp16, folder))
        facts = json.loads((path.parent / "facts.json").read_text())
        device = tvm.cpu()
        vm = tvm.relax.VirtualMachine(tvm.runtime.load_module(str(cache.verify(path))), device)
        return TvmSession(vm, device, inputs, outputs, path.stat().st_size, {"tvm": facts})

    def _compile(self, artifact: Artifact, shapes: dict, dtypes: dict, tgt: dict, fp16: bool, folder: Path) -> None:
        import onnx
        from tvm import relax
        from tvm.relax.frontend.onnx import from_onnx

        tvm = _tvm()
        model = onnx.load(str(artifact.onnx_path))
        mod = from_onnx(model, shape_dict=shapes, dtype_dict=dtypes, keep_params_in_input=False)
        mod = relax.transform.DecomposeOpsForInference()(mod)
        if fp16:
            mod = relax.transform.ToMixedPrecision(out_dtype="float16")(mod)
        target = tvm.target.Target(tgt)
        with tvm.transform.PassContext(opt_level=self.options.opt_level):
            executable = tvm.compile(mod, target=target)
        executable.export_library(str(folder / "model.so"))
        script = mod.script()  # the Relax program compiled: how much of it is fp16
        (folder / "facts.json").write_text(json.dumps({"target": tgt, "tvm": tvm.__version__, "input_shapes": shapes,
                                                       "mixed_precision_fp16": fp16,
                                                       "float16_mentions": script.count("float16")}))
