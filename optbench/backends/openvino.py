"""OpenVINO backend: the ONNX file read by OpenVINO's own converter (or an OpenVINO IR as given), compiled for the
CPU device. It computes the reference of an IR: OpenVINO on the CPU in f32.

fp32 runs with the f32 inference precision (OpenVINO's CPU plugin would otherwise pick bf16 on CPUs that have
it); bf16 and fp16 set ``INFERENCE_PRECISION_HINT`` where the CPU reports the capability, and are planned as
skipped with the reason where it does not. int8 is NNCF post-training quantization (``nncf.quantize``) fed from
the calibration split, saved as OpenVINO IR in the artifact cache. Dynamic dims stay dynamic: one converted
model serves every batch and shape of a spec.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, artifact_cache, host_array, register


class OvOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] = Field(
        "LATENCY", description="PERFORMANCE_HINT: LATENCY (one stream) or THROUGHPUT (streams for parallel requests).")
    streams: int | None = Field(None, ge=1, description="NUM_STREAMS; absent: what the hint picks.")
    threads: int | None = Field(
        None, ge=1, description="INFERENCE_NUM_THREADS; absent: the CPUs this process may run on (its affinity).")
    preset: Literal["performance", "mixed"] = Field(
        "performance", description="NNCF int8 preset: performance (symmetric activations) or mixed (asymmetric).")
    fast_bias_correction: bool = Field(True, description="NNCF's fast bias correction (off: the slower, fuller one).")


def _ov():
    import openvino

    return openvino


def cpu_capabilities() -> list[str]:
    """OPTIMIZATION_CAPABILITIES of the CPU plugin: FP32, BF16, FP16, INT8, ..."""
    try:
        return list(_ov().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # no openvino, or a plugin that cannot start here: unavailable_reason says which
        return []


PRECISION_HINT = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


class OvSession(Session):
    def __init__(self, compiled, names: list[str], artifact_bytes: int | None, feeds_as: dict | None = None) -> None:
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        self.outputs = list(compiled.outputs)
        self.names = names
        self.artifact_bytes = artifact_bytes
        self.feeds_as = feeds_as or {}  # the spec's input names → the IR's, where they differ

    def prepare(self, feeds: dict[str, np.ndarray]) -> dict:
        feeds = {self.feeds_as.get(k, k): v for k, v in feeds.items()}
        return {k: np.ascontiguousarray(v) for k, v in feeds.items() if k in self.input_names}

    def run(self, bound: dict) -> Any:
        return self.request.infer(bound, share_inputs=True, share_outputs=False)

    def to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        return {n: host_array(result[o]) for n, o in zip(self.names, self.outputs)}

    def close(self) -> None:
        self.request = self.compiled = None


def _onnx_output_names(model: Any, onnx_path: Path) -> list[str]:
    """Each output port under the ONNX graph's name for it (a port may carry several tensor names; any one of them
    would be a guess), so the outputs are paired with the reference's by name."""
    import onnx

    graph = {o.name for o in onnx.load(str(onnx_path), load_external_data=False).graph.output}
    names = []
    for port in model.outputs:
        found = sorted(graph & set(port.get_names()))
        names.append(found[0] if len(found) == 1 else port.get_any_name())
    return names


def _type_name(t) -> str:
    """OpenVINO's element type as its short name (f32, bf16, f16)."""
    name = getattr(t, "get_type_name", None)
    return name() if callable(name) else str(t)


def single_items(batches: list[dict], inputs: list) -> list[dict]:
    """Calibration batches as one item each (split on each input's batch axis), so that every batch size of a
    spec calibrates, and ships, the same int8 model (its batch dim stays dynamic)."""
    axes = {i.name: i.shape.index("batch") for i in inputs if "batch" in i.shape}
    out = []
    for feeds in batches:
        sizes = {feeds[k].shape[a] for k, a in axes.items() if k in feeds}
        if len(sizes) != 1:
            out.append(feeds)
            continue
        for j in range(sizes.pop()):
            out.append({k: (np.take(v, [j], axis=axes[k]) if k in axes else v) for k, v in feeds.items()})
    return out


@register
class OpenVINO(Backend):
    name = "openvino"
    requires = {"openvino": "openvino", "nncf": "nncf"}
    extra = "openvino"
    consumes = "onnx"
    explained = "onnx"
    runs = ("openvino",)
    reference_for = "openvino"
    reference_title = "OpenVINO CPU f32"
    Options = OvOptions

    @classmethod
    def reference_infer(cls, model: Any):
        """The IR compiled for the CPU with f32 inference precision: {output: host array}."""
        ov = _ov()
        compiled = ov.Core().compile_model(ov.Core().read_model(model.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        return OvSession(compiled, model.output_names, None, _feeds_as(model)).infer

    @classmethod
    def reference_label(cls, model_kind: str) -> str:
        return f"openvino {_ov().__version__} f32 cpu (the IR as given)"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if why := cls.import_reason():
            return why
        ov = _ov()
        try:
            devices = ov.Core().available_devices
        except Exception as e:
            return f"openvino {ov.__version__} cannot list its devices: {e}"
        return None if "CPU" in devices else f"openvino {ov.__version__} sees no CPU device (it sees {devices})"

    @classmethod
    def skip_reason(cls, target: Target, options: OvOptions) -> str | None:
        if target.precision in ("bf16", "fp16"):
            want = target.precision.upper()
            caps = cpu_capabilities()
            if want not in caps:
                return f"this CPU has no {want} inference in OpenVINO (its capabilities: {', '.join(caps) or 'none read'})"
        if target.precision == "int8":
            q = target.int8 or {}
            if q.get("mode", "static") != "static":
                return "OpenVINO int8 is NNCF post-training quantization (static, calibrated): use int8 mode static"
            try:
                import nncf  # noqa: F401
            except ImportError:
                return "int8 needs nncf (install the 'openvino' extra)"
        return None

    @classmethod
    def onnx_precision(cls, target: Target, options: OvOptions) -> str:
        return "fp32"  # OpenVINO realises every precision itself: hints, or NNCF from the fp32 graph

    @classmethod
    def describe(cls, options: OvOptions, target: Target) -> dict[str, Any]:
        d = {"performance_hint": options.hint, "inference_precision": PRECISION_HINT[target.precision],
             "streams": options.streams, "threads": options.threads}
        if target.precision == "int8":
            d["int8_by"] = f"nncf.quantize (preset {options.preset}, fast_bias_correction {options.fast_bias_correction})"
        return d

    def build(self, artifact: Artifact, target: Target) -> Session:
        from optbench.backends.onnxruntime import default_threads
        ov = _ov()
        core = ov.Core()
        facts: dict[str, Any] = {}
        native = artifact.native
        if target.precision == "int8":
            path = self._int8_ir(artifact_cache(artifact), artifact, target)
            model = core.read_model(str(path))
            size = path.stat().st_size + path.with_suffix(".bin").stat().st_size
            facts["openvino_int8"] = json.loads((path.parent / "facts.json").read_text())
        elif native is not None:  # an IR as given
            model = core.read_model(native.path)
            size = Path(native.path).stat().st_size + Path(native.path).with_suffix(".bin").stat().st_size
        else:
            model = ov.convert_model(str(artifact.onnx_path))
            size = None
        names = native.output_names if native is not None else _onnx_output_names(model, Path(artifact.onnx_path))
        config = {"PERFORMANCE_HINT": self.options.hint, "INFERENCE_PRECISION_HINT": PRECISION_HINT[target.precision],
                  "INFERENCE_NUM_THREADS": self.options.threads or default_threads()}
        if self.options.streams:
            config["NUM_STREAMS"] = self.options.streams
        compiled = core.compile_model(model, "CPU", config)
        facts["openvino_runtime"] = {"execution_devices": list(compiled.get_property("EXECUTION_DEVICES")),
                                     "streams": int(compiled.get_property("NUM_STREAMS")),
                                     "inference_precision": _type_name(compiled.get_property("INFERENCE_PRECISION_HINT")),
                                     "version": ov.__version__}
        session = OvSession(compiled, names, size, _feeds_as(native))
        session.facts = facts
        if target.precision == "int8":
            session.built_path = str(path)  # the int8 IR it made and runs, not the file it was made from
        return session

    def _int8_ir(self, cache, artifact: Artifact, target: Target) -> Path:
        """NNCF PTQ of the fp32 ONNX as OpenVINO IR, cached by the file, the calibration data and the recipe."""
        import nncf

        ov = _ov()
        batches = single_items(artifact.calibration or [], artifact.inputs or [])
        if not batches:
            raise RuntimeError("OpenVINO int8 needs calibration batches; the spec's data has no calibration split")
        from optbench.digest import feeds_digest, file_digest

        recipe = {"preset": self.options.preset, "fast_bias_correction": self.options.fast_bias_correction,
                  "items": sum(len(next(iter(f.values()))) for f in batches)}
        native = artifact.native
        source = Path(native.path) if native is not None else Path(artifact.onnx_path)
        weights = file_digest(source.with_suffix(".bin")) if native is not None else ""
        key = cache.key("openvino-int8", [file_digest(source), weights, feeds_digest(batches), recipe, ov.__version__,
                                           nncf.__version__])
        renamed = _feeds_as(native)

        def build(folder: Path) -> None:
            model = ov.Core().read_model(str(source)) if native is not None else ov.convert_model(str(source))
            inputs = [i.get_any_name() for i in model.inputs]
            dataset = nncf.Dataset(batches, lambda feeds: {k: v for k, v in ((renamed.get(n, n), x)
                                                                              for n, x in feeds.items()) if k in inputs})
            preset = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
            quantized = nncf.quantize(model, dataset, preset=preset[self.options.preset], subset_size=len(batches),
                                      fast_bias_correction=self.options.fast_bias_correction)
            ov.save_model(quantized, str(folder / "model.xml"))
            kinds: dict[str, int] = {}
            for op in quantized.get_ops():
                kinds[op.get_type_name()] = kinds.get(op.get_type_name(), 0) + 1
            (folder / "facts.json").write_text(json.dumps({"fake_quantize_ops": kinds.get("FakeQuantize", 0),
                                                           "recipe": recipe}))

        path, _ = cache.get_or_build(key, "model.xml", build)
        return path


def _feeds_as(native: Any) -> dict[str, str]:
    """The spec's input names → an IR's own, where they differ (an ONNX file takes the spec's names)."""
    return {i["name"]: i["model"] for i in native.inputs if i["name"] != i["model"]} if native is not None else {}
