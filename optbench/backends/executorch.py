"""ExecuTorch backend: ``torch.export`` then ``to_edge_transform_and_lower`` with the XNNPACK partitioner, run by
the ExecuTorch runtime's Python bindings on the CPU (the same runtime and kernels a phone or an edge board runs).

fp32, and int8 through the PT2E flow with the XNNPACK quantizer (symmetric, per-channel weights, static
activations calibrated on the calibration split). A program is exported at the variant's batch and shape (one
``.pte`` per point, the way mobile deployments ship fixed shapes); fp16/bf16 are planned as skipped with the reason.
The ``.pte`` is kept in the artifact cache, keyed by the module, the point, the calibration data and the versions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, artifact_cache, register
from optbench.digest import feeds_digest, module_digest


class EtOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    per_channel: bool = Field(True, description="int8: per-channel weight scales (XNNPACK quantizer).")
    activations: Literal["static"] = Field("static", description="int8 activations: static, calibrated.")


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


class EtSession(Session):
    names_outputs = False  # a torch module's outputs, flattened: paired with the reference's by position

    def __init__(self, program, input_names: list[str], output_names: list[str], pte_bytes: int, facts: dict) -> None:
        import torch

        # the method borrows from its program: the session holds both, or the method outlives its program
        self.torch, self.program = torch, program
        self.method = program.load_method("forward")
        self.input_names, self.output_names = input_names, output_names
        self.artifact_bytes, self.facts = pte_bytes, facts

    def prepare(self, feeds: dict[str, np.ndarray]) -> list:
        return [self.torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in self.input_names]

    def run(self, bound: list) -> Any:
        return self.method.execute(bound)

    def to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        values = list(result)
        names = self.output_names if len(self.output_names) == len(values) else \
            ["output"] + [f"output_{i}" for i in range(1, len(values))]
        return {n: v.detach().float().numpy() for n, v in zip(names, values)}

    def close(self) -> None:
        self.method = self.program = None


@register
class ExecuTorch(Backend):
    name = "executorch"
    requires = {"executorch": "executorch"}
    imports = ("executorch", "executorch.backends.xnnpack.partition.xnnpack_partitioner", "executorch.runtime")
    # about 10 s of imports beside torch (the lowering's and the runtime's), once per sweep instead of per variant
    preload = ("numpy", "torch", "executorch.runtime", "executorch.exir",
               "executorch.backends.xnnpack.partition.xnnpack_partitioner", "optbench.backends.executorch")
    extra = "executorch"
    consumes = "torch"
    module_kinds = ("eager",)  # lowered through torch.export, which takes eager modules
    Options = EtOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return cls.import_reason()

    @classmethod
    def skip_reason(cls, target: Target, options: EtOptions) -> str | None:
        if target.precision in ("fp16", "bf16"):
            return f"this backend lowers fp32 and int8 (PT2E XNNPACK) programs; {target.precision} is not built"
        if target.precision == "int8" and (target.int8 or {}).get("mode", "static") == "dynamic":
            return "int8 here is the PT2E XNNPACK quantizer with static activations: use int8 mode static"
        return None

    @classmethod
    def describe(cls, options: EtOptions, target: Target) -> dict[str, Any]:
        d = {"delegate": "XNNPACK", "shapes": "static: one program per batch/shape point"}
        if target.precision == "int8":
            d["int8_by"] = f"PT2E XNNPACKQuantizer (symmetric, {'per-channel' if options.per_channel else 'per-tensor'} " \
                           "weights, static activations)"
        return d

    def build(self, artifact: Artifact, target: Target) -> Session:
        from executorch.runtime import Runtime

        names = [i.name for i in artifact.inputs]
        sample = artifact.sample
        cache = artifact_cache(artifact)
        key = cache.key("executorch", [module_digest(artifact.module), target.precision, target.batch_size,
                                       target.dims, self.options.model_dump(), feeds_digest(artifact.calibration or [])[:16],
                                       _version("executorch"), _version("torch")])
        path, _ = cache.get_or_build(key, "model.pte", lambda folder: self._lower(artifact, target, names, folder))
        facts = json.loads((path.parent / "facts.json").read_text())
        program = Runtime.get().load_program(path.read_bytes())
        session = EtSession(program, names, facts.pop("output_names"), path.stat().st_size, {"executorch": facts})
        if sample is not None:
            session.infer(sample)
        return session

    def _lower(self, artifact: Artifact, target: Target, names: list[str], folder: Path) -> None:
        import torch
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower

        module = artifact.module.eval()
        args = tuple(torch.from_numpy(np.ascontiguousarray(artifact.sample[n])) for n in names)
        exported = torch.export.export(module, args)
        facts: dict[str, Any] = {}
        if target.precision == "int8":
            exported, facts = self._quantize(exported, artifact, names, args)
        lowered = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
        graph = lowered.exported_program().graph_module.graph
        calls = [n for n in graph.nodes if n.op == "call_function"]
        delegated = sum("executorch_call_delegate" in str(n.target) for n in calls)
        program = lowered.to_executorch()
        (folder / "model.pte").write_bytes(program.buffer)
        with torch.no_grad():
            out = module(*args)
        from optbench.outputs import flatten_torch

        facts.update(output_names=list(flatten_torch(out)), delegate_calls=delegated,
                     ops_outside_delegate=sorted({str(n.target).split(".")[-2] if "." in str(n.target) else str(n.target)
                                                  for n in calls if "executorch_call_delegate" not in str(n.target)
                                                  and "getitem" not in str(n.target)}))
        (folder / "facts.json").write_text(json.dumps(facts))

    def _quantize(self, exported, artifact: Artifact, names: list[str], args: tuple):
        import torch
        from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
            XNNPACKQuantizer,
            get_symmetric_quantization_config,
        )
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        batches = artifact.calibration or []
        if not batches:
            raise RuntimeError("ExecuTorch int8 needs calibration batches; the spec's data has no calibration split")
        quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=self.options.per_channel))
        prepared = prepare_pt2e(exported.module(), quantizer)
        shape = tuple(args[0].shape)
        used = 0
        with torch.no_grad():
            for feeds in batches:
                batch = tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names)
                if tuple(batch[0].shape) != shape:  # a short last batch: the program has a fixed shape
                    continue
                prepared(*batch)
                used += len(batch[0])
        converted = convert_pt2e(prepared)
        return torch.export.export(converted, args), {"calibration_items": used}


