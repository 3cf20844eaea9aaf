"""LiteRT (TFLite) backend: the torch module converted by ``litert_torch.convert`` to a ``.tflite`` flatbuffer,
run by ``ai_edge_litert``'s interpreter on the CPU (XNNPACK delegate), the runtime Android and embedded Linux ship.

fp32 converts the module as is; fp16 casts the weights to float16 with ai-edge-quantizer's float-casting recipe
(weights fp16, math fp32); int8 is full-integer: PT2E with LiteRT's own quantizer (symmetric, per-channel weights,
static activations) calibrated on the calibration split, so inputs and outputs are int8 too (quantized before the
timed call, dequantized after it, with the model's own scales). One ``.tflite`` per batch/shape point (static
shapes); bf16 is planned as skipped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, artifact_cache, register
from optbench.digest import feeds_digest, module_digest


class LiteRtOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    threads: int | None = Field(None, ge=1, description="Interpreter threads; absent: the CPUs this process may use.")
    per_channel: bool = Field(True, description="int8: per-channel weight scales.")


def _version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


class LiteRtSession(Session):
    names_outputs = False  # a torch module's outputs, flattened: paired with the reference's by position

    def __init__(self, interpreter, input_names: list[str], output_names: list[str], nbytes: int, facts: dict) -> None:
        self.it = interpreter
        self.inputs = interpreter.get_input_details()  # in the module's argument order
        outs = interpreter.get_output_details()
        num = [int(m.group(1)) if (m := re.search(r"output_(\d+)", d["name"])) else i for i, d in enumerate(outs)]
        self.outputs = [d for _, d in sorted(zip(num, outs), key=lambda x: x[0])]
        self.input_names, self.output_names = input_names, output_names
        self.artifact_bytes, self.facts = nbytes, facts

    def prepare(self, feeds: dict[str, np.ndarray]) -> list:
        bound = []
        for name, d in zip(self.input_names, self.inputs):
            x = np.ascontiguousarray(feeds[name])
            if d["dtype"] in (np.int8, np.uint8):  # full-integer model: quantize with its input scale, untimed
                scale, zero = d["quantization"]
                info = np.iinfo(d["dtype"])
                x = np.clip(np.round(x / scale) + zero, info.min, info.max).astype(d["dtype"])
            bound.append((d["index"], x.astype(d["dtype"], copy=False)))
        return bound

    def run(self, bound: list) -> Any:
        for index, x in bound:
            self.it.set_tensor(index, x)
        self.it.invoke()
        return None

    def to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        out = {}
        names = self.output_names if len(self.output_names) == len(self.outputs) else \
            ["output"] + [f"output_{i}" for i in range(1, len(self.outputs))]
        for name, d in zip(names, self.outputs):
            v = self.it.get_tensor(d["index"])
            if d["dtype"] in (np.int8, np.uint8):
                scale, zero = d["quantization"]
                v = (v.astype(np.float32) - zero) * scale
            out[name] = np.asarray(v, dtype=np.float32)
        return out

    def close(self) -> None:
        self.it = None


@register
class LiteRt(Backend):
    name = "litert"
    requires = {"litert_torch": "litert-torch", "ai_edge_litert": "ai-edge-litert"}
    imports = ("litert_torch", "ai_edge_litert.interpreter")
    extra = "litert"
    consumes = "torch"
    module_kinds = ("eager",)  # lowered through torch.export, which takes eager modules
    Options = LiteRtOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return cls.import_reason()

    @classmethod
    def skip_reason(cls, target: Target, options: LiteRtOptions) -> str | None:
        if target.precision == "bf16":
            return "LiteRT's CPU interpreter has no bf16 path; fp32, fp16 weights and full-integer int8 are built"
        if target.precision == "int8" and (target.int8 or {}).get("mode", "static") != "static":
            return "LiteRT int8 here is full-integer (static activations, calibrated): use int8 mode static"
        return None

    @classmethod
    def describe(cls, options: LiteRtOptions, target: Target) -> dict[str, Any]:
        how = {"fp32": "litert_torch.convert", "fp16": "fp16 weights (ai-edge-quantizer float casting), fp32 math",
               "int8": "full-integer PT2E (LiteRT PT2EQuantizer, calibrated), int8 inputs and outputs"}
        return {"conversion": how.get(target.precision, ""), "shapes": "static: one .tflite per batch/shape point"}

    def build(self, artifact: Artifact, target: Target) -> Session:
        from ai_edge_litert.interpreter import Interpreter

        from optbench.backends.onnxruntime import default_threads

        names = [i.name for i in artifact.inputs]
        cache = artifact_cache(artifact)
        key = cache.key("litert", [module_digest(artifact.module), target.precision, target.batch_size, target.dims,
                                   self.options.model_dump(), feeds_digest(artifact.calibration or [])[:16] if target.precision == "int8"
                                   else "", _version("litert-torch"), _version("ai-edge-litert")])
        path, _ = cache.get_or_build(key, "model.tflite", lambda folder: self._convert(artifact, target, names, folder))
        facts = json.loads((path.parent / "facts.json").read_text())
        it = Interpreter(model_path=str(cache.verify(path)), num_threads=self.options.threads or default_threads())
        it.allocate_tensors()
        facts["tensor_types"] = sorted({np.dtype(t["dtype"]).name for t in it.get_tensor_details()})
        return LiteRtSession(it, names, facts.pop("output_names"), path.stat().st_size, {"litert": facts})

    def _convert(self, artifact: Artifact, target: Target, names: list[str], folder: Path) -> None:
        import litert_torch
        import torch

        from optbench.outputs import flatten_torch

        module = artifact.module.eval()
        args = tuple(torch.from_numpy(np.ascontiguousarray(artifact.sample[n])) for n in names)
        facts: dict[str, Any] = {}
        if target.precision == "int8":
            edge, facts = self._full_integer(module, artifact, names, args)
        else:
            edge = litert_torch.convert(module, args)
        edge.export(str(folder / "model.tflite"))
        if target.precision == "fp16":
            _fp16_weights(folder / "model.tflite")
        with torch.no_grad():
            facts["output_names"] = list(flatten_torch(module(*args)))
        (folder / "facts.json").write_text(json.dumps(facts))

    def _full_integer(self, module, artifact: Artifact, names: list[str], args: tuple):
        import litert_torch
        import torch
        from litert_torch.quantize.pt2e_quantizer import PT2EQuantizer, get_symmetric_quantization_config
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

        batches = artifact.calibration or []
        if not batches:
            raise RuntimeError("LiteRT int8 needs calibration batches; the spec's data has no calibration split")
        quantizer = PT2EQuantizer().set_global(
            get_symmetric_quantization_config(is_per_channel=self.options.per_channel, is_dynamic=False))
        prepared = prepare_pt2e(torch.export.export(module, args).module(), quantizer)
        shape, used = tuple(args[0].shape), 0
        with torch.no_grad():
            for feeds in batches:
                batch = tuple(torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names)
                if tuple(batch[0].shape) != shape:  # a short last batch: the program has a fixed shape
                    continue
                prepared(*batch)
                used += len(batch[0])
        converted = convert_pt2e(prepared, fold_quantize=False)
        edge = litert_torch.convert(converted, args, quant_config=QuantConfig(pt2e_quantizer=quantizer))
        return edge, {"calibration_items": used}


def _fp16_weights(path: Path) -> None:
    """Weights cast to float16 in place (ai-edge-quantizer's float-casting recipe over every supported op)."""
    import ai_edge_quantizer as aq
    from ai_edge_quantizer import qtyping, recipe_manager

    rm = recipe_manager.RecipeManager()
    rm.add_weight_only_config(regex=".*", operation_name=qtyping.TFLOperationName.ALL_SUPPORTED, num_bits=16,
                              granularity=qtyping.QuantGranularity.TENSORWISE,
                              algorithm_key=aq.recipe.AlgorithmName.FLOAT_CASTING)
    quantizer = aq.Quantizer(str(path))
    quantizer.load_quantization_recipe(rm.get_quantization_recipe())
    quantizer.quantize().export_model(str(path), overwrite=True)
