"""The answer as something to deploy: the spec's variant and ``serving:`` section (paste them into the spec and
``optbench run`` measures the answer again), and, where the variant is an ONNX model ONNX Runtime served, a
Triton Inference Server ``config.pbtxt`` for its ONNX Runtime backend (instance group, max batch, dynamic
batching's queue delay and preferred sizes)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

TRITON_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
                7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64",
                12: "TYPE_UINT32", 13: "TYPE_UINT64", 16: "TYPE_BF16"}


def serving_block(winner: dict, base: dict, p99_ms: float) -> dict[str, Any]:
    """The ``serving:`` section of the answer: a server run at the load each device carries, and the peak search,
    on the answer's lanes, batcher and CUDA graphs, with the LoadGen settings it was searched with."""
    out: dict[str, Any] = {k: v for k, v in base.items() if k not in ("scenario", "qps", "peak", "concurrency",
                                                                      "dynamic_batching", "instances", "variants")}
    out.update(scenario="server", qps=[round(winner["load_qps"], 3)], p99_ms=p99_ms, peak=True,
               instances=winner["instances"], compare_unbatched=False)
    if winner.get("cuda_graphs"):
        out["cuda_graphs"] = True
    else:
        out.pop("cuda_graphs", None)
    if winner["max_batch"] > 1:
        out["dynamic_batching"] = {"max_batch": winner["max_batch"], "max_delay_ms": winner["max_delay_ms"],
                                   "sizes": list(winner["sizes"])}
    return out


def variant_block(row: dict, spec: dict) -> dict[str, Any]:
    """The spec's ``variants:`` and ``backends:`` narrowed to the answer's variant (its transform, precision, int8
    or fp16 settings, batch and shape, and its backend entry)."""
    variants: dict[str, Any] = {"precision": [row["precision"]], "batch_size": [row["batch_size"]]}
    if row.get("shape"):
        variants["shapes"] = [dict(row["shape"])]
    if row.get("int8"):
        variants["int8"] = [{k: v for k, v in row["int8"].items() if v is not None}]
    if row.get("fp16"):
        variants["fp16"] = [row["fp16"]]
    transforms = (spec.get("variants") or {}).get("transforms") or ["none"]
    named = [t for t in transforms if (t if isinstance(t, str) else t.get("name")) == row.get("transform")]
    variants["transforms"] = named or ["none"]
    backends = [_plain(b) for b in spec.get("backends") or []
                if (b if isinstance(b, str) else b.get("label") or b["name"]) == row.get("backend")]
    return {"variants": variants, "backends": backends or [row.get("backend")]}


def _plain(entry: Any) -> Any:
    """A backend entry as a user writes it: empty and null settings left out, a bare name where nothing else is set."""
    if isinstance(entry, str):
        return entry
    out = {k: v for k, v in entry.items() if v not in (None, {}, [])}
    return out["name"] if set(out) == {"name"} else out


def fragment_text(row: dict, spec: dict, winner: dict, base: dict, p99_ms: float) -> str:
    return yaml.safe_dump({**variant_block(row, spec), "serving": serving_block(winner, base, p99_ms)},
                          sort_keys=False, width=110)


def triton_name(text: str) -> str:
    """A Triton model (folder) name from the spec's name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("._") or "model"


def triton_platform(row: dict) -> str | None:
    """The Triton platform that serves the row's artifact as it was measured (its backend's ``triton_platform``)."""
    from optbench.backends import get_backend
    from optbench.errors import SpecError

    try:
        return get_backend(str(row.get("backend_name"))).triton_platform
    except SpecError:  # a backend this installation does not know
        return None


def triton_unavailable(row: dict) -> str | None:
    """Why the answer's variant gets no Triton configuration (None: it does)."""
    if triton_platform(row) is None:
        return (f"its backend is {row.get('backend_name')}: no Triton backend serves what was measured (Triton's "
                f"ONNX Runtime backend serves ONNX Runtime variants)")
    art = row.get("artifact")
    if not isinstance(art, str) or not art.endswith(".onnx") or not Path(art).exists():
        return f"its ONNX file is not there ({art})"
    return None


def triton_config(name: str, onnx_path: Path, winner: dict, device: str, batch_axes: dict | None = None,
                  platform: str = "onnxruntime_onnx") -> str:
    """``config.pbtxt`` for Triton's ONNX Runtime backend: the model's inputs and outputs without their batch
    dimension (Triton's max_batch_size > 0 adds it in front), the instance group, and dynamic batching."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    batched = winner["max_batch"] > 1 or all((batch_axes or {}).get(k, 0) == 0 for k in (batch_axes or {}))

    def tensors(values: list) -> list[str]:
        out = []
        for v in values:
            if v.name in inits:
                continue
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
            dims = dims[1:] if batched and dims else dims
            out.append(f'  {{\n    name: "{v.name}"\n    data_type: {TRITON_TYPES.get(t.elem_type, "TYPE_FP32")}\n'
                       f'    dims: [ {", ".join(str(d) for d in dims) or "1"} ]\n  }}')
        return out

    kind = "KIND_GPU" if device.startswith("cuda") else "KIND_CPU"
    lines = [f'name: "{name}"', f'platform: "{platform}"', f"max_batch_size: {winner['max_batch'] if batched else 0}",
             "input [\n" + ",\n".join(tensors(list(model.graph.input))) + "\n]",
             "output [\n" + ",\n".join(tensors(list(model.graph.output))) + "\n]",
             f"instance_group [\n  {{\n    count: {winner['instances']}\n    kind: {kind}\n  }}\n]"]
    if winner["max_batch"] > 1:
        preferred = [s for s in winner["sizes"] if s > 1]
        lines.append("dynamic_batching {\n" + (f"  preferred_batch_size: [ {', '.join(map(str, preferred))} ]\n"
                                              if preferred else "") +
                     f"  max_queue_delay_microseconds: {round(winner['max_delay_ms'] * 1000)}\n}}")
    return "\n".join(lines) + "\n"
