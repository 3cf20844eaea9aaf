"""int8 quantization: ONNX Runtime static (calibrated QDQ) and dynamic, and PyTorch-side PTQ with nvidia-modelopt.

The calibration items come from the calibration split, never from eval. On x86 CPUs
with VNNI the default is U8 activations / S8 weights: S8 activations run slower there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Part of the cache key of int8 artifacts: bump it when the quantization recipe changes.
RECIPE = "int8-v3: normalised source, pre-processing with a fallback, graph facts read from the file"
# Part of the key of cached activation ranges: bump it when the calibration (reader, options) changes.
CALIBRATION_RECIPE = "calibration-v1: ORT calibrator, no moving average, the reader's batches"


class _Reader:
    """ORT CalibrationDataReader over the calibration split, in small batches in the model's layout."""

    def __init__(self, items, names: list[str], samples: int, batch: int = 8) -> None:
        n = min(samples, len(items))
        batch = batch if any(f.batch_axis is not None for f in (items.feed or [])) or items.feed is None else 1
        part = items.take(np.arange(n))
        self.size = min(batch, n)
        self.batches = [{k: v for k, v in feeds.items() if k in names} for feeds, _ in part.batches(self.size)]
        self.pos = 0

    def get_next(self) -> dict | None:
        if self.pos >= len(self.batches):
            return None
        self.pos += 1
        return self.batches[self.pos - 1]

    def rewind(self) -> None:
        self.pos = 0


def calibration_digest(items, samples: int) -> dict[str, Any]:
    """What the calibration really sees (for cache keys): a digest of its items and their count."""
    n = min(samples, len(items))
    return {"digest": items.digest(n)[:20], "items": n}


def quantize_onnx(ctx: Any, src: Path, dst: Path, variant: Any, module: Any) -> dict[str, Any]:
    from optbench.spec.models import Int8Settings

    s = Int8Settings.model_validate(variant.int8)
    if s.mode == "modelopt":
        from optbench.export.graphfacts import int8_facts

        facts = _modelopt(ctx, dst, variant, module, s)
        return {**facts, "int8_graph": int8_facts(dst)}
    import contextlib
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    _check_op_types(s)
    src, dst = Path(src).resolve(), Path(dst).resolve()
    # ORT's shape inference writes temporary files (sym_shape_infer_temp.onnx, <uuid>.data: a copy of the
    # weights) into the working directory for larger models and leaves them there: work inside a scratch folder
    # of the artifact's own, removed afterwards with the pre-processed model, so nothing lands in the user's
    # folder or stays in the cache.
    with tempfile.TemporaryDirectory(dir=dst.parent, prefix="scratch-") as scratch, contextlib.chdir(scratch):
        pre = Path(scratch) / "pre.onnx"
        facts: dict[str, Any] = {}
        facts["pre_process"] = _pre_process(quant_pre_process, src, pre)
        if facts["pre_process"].startswith("skipped"):  # an optimisation only: the graph facts say what was built
            pre = src
        excluded = excluded_nodes(pre, s.exclude_nodes)
        if excluded:
            facts["excluded_nodes"] = excluded
        half = [n for n in excluded_nodes(pre, s.fp16_nodes, "int8 fp16_nodes") if n not in excluded]
        excluded = excluded + half
        if s.mode == "dynamic":
            quantize_dynamic(str(pre), str(dst), weight_type=QuantType.QInt8, per_channel=s.per_channel,
                             op_types_to_quantize=s.op_types, nodes_to_exclude=excluded)
            facts.update(int8="onnxruntime dynamic (weights S8, activations quantized at run time)")
        else:
            facts.update(_static(ctx, pre, dst, variant, s, excluded))
        if half:
            from optbench.export.precision import convert_nodes_fp16

            facts.update(convert_nodes_fp16(dst, dst, half), fp16_nodes=half)
    from optbench.export.graphfacts import int8_facts

    graph = int8_facts(dst)
    if s.per_channel and graph["granularity"] == "per-tensor":
        graph["warnings"].append("per_channel was asked for, but the graph holds per-tensor weights "
                                 f"(onnxruntime's {s.mode} quantizer)")
    facts.update(requested={"per_channel": s.per_channel}, op_types=s.op_types or "all", int8_graph=graph,
                 per_channel=graph["granularity"] == "per-channel", weights=graph["weights"])
    return facts


def excluded_nodes(path: Path, patterns: list[str] | None, what: str = "int8 exclude_nodes") -> list[str]:
    """Node names of the graph that ``patterns`` (fnmatch) name; a pattern that names none is an error."""
    import onnx

    from optbench.export.precision import matching_nodes

    if not patterns:
        return []
    names = [n.name for n in onnx.load(str(path), load_external_data=False).graph.node if n.name]
    return matching_nodes(names, patterns, what)


def _pre_process(quant_pre_process, src: Path, dst: Path) -> str:
    """ORT's pre-processing (shape inference, optimisation): with symbolic shape inference first, which fails on
    graphs with data-dependent shapes, then with ONNX's shape inference alone; what was done, for the row."""
    errors = []
    for skip_symbolic in (False, True):
        try:
            quant_pre_process(str(src), str(dst), skip_symbolic_shape=skip_symbolic)
            return "onnxruntime quant_pre_process" + (" (ONNX shape inference; symbolic failed)" if skip_symbolic else "")
        except Exception as e:
            errors.append(str(e).splitlines()[0][:120] if str(e) else e.__class__.__name__)
    return f"skipped: quant_pre_process failed ({'; '.join(errors)})"


def _check_op_types(s: Any) -> None:
    """op_types that onnxruntime's quantizer for this mode would silently leave in float are an error."""
    if not s.op_types:
        return
    from onnxruntime.quantization.registry import IntegerOpsRegistry, QDQRegistry

    known = QDQRegistry if s.mode == "static" else IntegerOpsRegistry
    if bad := [op for op in s.op_types if op not in known]:
        raise ValueError(f"int8 op_types {bad}: onnxruntime's {s.mode} quantization does not quantize them; "
                         f"it quantizes {sorted(known)}")


def _static(ctx: Any, pre: Path, dst: Path, variant: Any, s: Any, excluded: list[str]) -> dict[str, Any]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    items = ctx.splits.calibration.at_shape(ctx.spec.inputs, variant.dims)
    reader = _Reader(items, [i.name for i in ctx.spec.inputs], s.samples, batch=ctx.sample_batch(8))
    method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
              "percentile": CalibrationMethod.Percentile}[s.method]
    act = QuantType.QUInt8 if s.activations == "u8" else QuantType.QInt8

    def quantize(ranges: Path | None) -> None:
        quantize_static(str(pre), str(dst), reader, quant_format=QuantFormat.QDQ, per_channel=s.per_channel,
                        activation_type=act, weight_type=QuantType.QInt8, calibrate_method=method,
                        op_types_to_quantize=s.op_types, nodes_to_exclude=excluded,
                        extra_options={"CalibMovingAverage": False, "QuantizeBias": s.quantize_bias,
                                       "ActivationSymmetric": s.symmetric_activations},
                        **({"calibration_cache_path": str(ranges)} if ranges else {}))

    import inspect

    if "calibration_cache_path" not in inspect.signature(quantize_static).parameters:  # onnxruntime < 1.32
        quantize(None)
        return {"int8": f"onnxruntime static QDQ, {s.method} calibration on {min(s.samples, len(items))} items",
                "activations": s.activations.upper()}

    # the activation ranges depend on the graph, the items and the method, not on the nodes left in float or the
    # quantization format: variants that differ only there (a search's fallbacks) calibrate once
    from optbench.digest import file_digest

    key = ctx.cache.key("calibration", [file_digest(pre), s.method, s.op_types, calibration_digest(items, s.samples),
                                        reader.size, CALIBRATION_RECIPE])
    ranges, cached = ctx.cache.get_or_build(key, "ranges.json", lambda folder: quantize(folder / "ranges.json"))
    if cached:
        quantize(ranges)
    return {"int8": f"onnxruntime static QDQ, {s.method} calibration on {min(s.samples, len(items))} items" +
                    (" (activation ranges from the cache)" if cached else ""),
            "activations": s.activations.upper()}


def _modelopt(ctx: Any, dst: Path, variant: Any, module: Any, s: Any) -> dict[str, Any]:
    """PTQ in PyTorch with modelopt (calibration forward loop), exported as explicit Q/DQ ONNX."""
    import copy

    import modelopt.torch.quantization as mtq
    import torch

    from optbench.export.onnx import export_onnx
    if module is None:
        raise ValueError("int8 mode 'modelopt' needs a torch model, and this model is an ONNX file")
    items = ctx.splits.calibration.at_shape(ctx.spec.inputs, variant.dims)
    n = min(s.samples, len(items))
    model = copy.deepcopy(module).float().eval()
    cfg = copy.deepcopy(mtq.INT8_DEFAULT_CFG)
    if s.method != "minmax":
        raise ValueError("int8 mode 'modelopt' calibrates with max (method: minmax); "
                         f"method '{s.method}' is for mode 'static'")
    if s.op_types or s.exclude_nodes:
        raise ValueError("int8 mode 'modelopt' quantizes the layers of its default config; "
                         "op_types and exclude_nodes are for modes 'static' and 'dynamic'")
    if not s.per_channel:
        cfg["quant_cfg"]["*weight_quantizer"] = {"num_bits": 8, "axis": None}

    def forward_loop(m) -> None:
        with torch.no_grad():
            for feeds in _Reader(items, list(items.inputs), n, batch=ctx.sample_batch(8)).batches:
                m(*(torch.from_numpy(v) for v in feeds.values()))

    model = mtq.quantize(model, cfg, forward_loop)
    sample = next(items.batches(ctx.sample_batch(max(2, variant.batch_size))))[0]
    info = export_onnx(model, ctx.spec.inputs, sample, dst, ctx.spec.export.model_copy(update={"simplify": False}),
                       ctx.prepared["output_names"], ctx.prepared["output_axes"])
    return {"int8": f"modelopt PTQ (INT8_DEFAULT_CFG, {s.method}) exported as Q/DQ ONNX on {n} items",
            "per_channel": s.per_channel, "activations": "S8", "weights": "S8", **info}


def calibration_batches(items, samples: int, batch: int = 8) -> list[dict[str, np.ndarray]]:
    return _Reader(items, [f.name for f in items.feed] if items.feed else list(items.inputs), samples, batch).batches
