"""Expand a spec's axes into variants with stable ids; mark what a backend cannot do as skipped."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from optbench.backends import Target, get_backend
from optbench.errors import SpecError
from optbench.spec.models import Fp16Settings, Int8Settings, Spec, TransformSpec


@dataclass(frozen=True)
class Variant:
    id: str
    backend: str                 # the spec's key (label or name)
    backend_name: str            # the registered backend
    options: dict[str, Any]
    device: str
    precision: str
    transform: str
    batch_size: int
    dims: dict[str, int]
    int8: dict[str, Any] | None = None
    status: str = "planned"      # planned | skipped
    reason: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    fp16: dict[str, Any] | None = None  # fp16 graph settings; None for other precisions

    @property
    def shape_label(self) -> str:
        return "x".join(f"{k}{v}" for k, v in sorted(self.dims.items()))

    @property
    def target(self) -> Target:
        return Target(self.precision, self.device, self.batch_size, dict(self.dims), self.transform, self.int8,
                      "", fp16=self.fp16)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def int8_label(s: Int8Settings) -> str:
    ops = ("-" + "_".join(op.lower() for op in s.op_types)) if s.op_types else ""
    if s.exclude_nodes:
        ops += f"-excl{len(s.exclude_nodes)}"
    if s.fp16_nodes:
        ops += f"-h{len(s.fp16_nodes)}"
    if s.mode == "dynamic":
        return "dyn" + ops
    if s.mode == "modelopt":
        return "mtq"
    bias = ("-sym" if s.symmetric_activations else "") + ("" if s.quantize_bias else "-fbias")
    return f"{s.method}{'-pc' if s.per_channel else ''}-{s.activations}{bias}{ops}"


def fp16_label(s: Fp16Settings) -> str:
    return f"keep{len(s.fp32_nodes)}" if s.fp32_nodes else ""


def node_lists_reason(cls: Any, target: Target, options: Any, q: Int8Settings | None,
                      h: Fp16Settings | None) -> str | None:
    """Node lists that only a converted ONNX graph realises (fp16 nodes of a mixed int8 graph, fp32 nodes of an
    fp16 graph) on a backend that converts the fp32 graph itself: skipped, never silently dropped."""
    lists = [name for name, on in (("int8 fp16_nodes", q is not None and q.fp16_nodes),
                                   ("fp16 fp32_nodes", h is not None and h.fp32_nodes)) if on]
    if not lists:
        return None
    if cls.consumes == "onnx" and cls.onnx_precision(target, options) == target.precision:
        return None
    return (f"{lists[0]} are realised in the converted ONNX graph, and backend '{cls.name}' builds "
            f"{target.precision} itself from the fp32 model")


def points(spec: Spec) -> list[tuple[int, dict[str, int]]]:
    shapes = spec.variants.shapes or [{}]
    out: list[tuple[int, dict[str, int]]] = []
    for shape in shapes:
        dims = {k: v for k, v in shape.items() if k != "batch"}
        batches = [shape["batch"]] if "batch" in shape else spec.variants.batch_size
        for b in batches:
            if (b, dims) not in out:
                out.append((b, dims))
    return out


def _digest(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:8]


def plan(spec: Spec, mode: str = "run", fixed_batch: tuple[int | None, str] = (None, "")) -> list[Variant]:
    """Every combination of transform × precision (× int8 settings) × backend × batch × shape. ``mode`` "build"
    plans for ``optbench build``: a backend that can build here but not run (an engine builder with no GPU)
    is planned, not skipped. ``fixed_batch``: the batch the model fixes, and why; other batch sizes are skipped
    (and a spec that lists only those is an error)."""
    fixed, why = fixed_batch
    if fixed is not None and fixed not in {b for b, _ in points(spec)}:
        raise SpecError(f"the model's batch is fixed at {fixed} ({why}), and the spec plans no batch of {fixed}",
                        field="variants.batch_size", expected=f"[{fixed}]",
                        found=str(sorted({b for b, _ in points(spec)})))
    variants: list[Variant] = []
    # ids hash what a variant is made of; settings at their defaults are left out of the hash, so adding a new
    # option to a backend or transform does not rename the variants of every existing spec
    dump = {"mode": "json", "exclude_defaults": True}
    base = {"model": spec.model.model_dump(**dump), "inputs": [i.model_dump(**dump) for i in spec.inputs],
            "export": spec.export.model_dump(**dump), "seed": spec.seed}
    for i, b in enumerate(spec.backends):
        cls = get_backend(b.name)
        options = cls.parse_options(b.options, f"backends.{i}.options")
        unavailable = cls.build_unavailable_reason() if mode == "build" else cls.unavailable_reason()
        device = cls.device_of(options)
        for transform in spec.variants.transforms:
            tname = "none" if transform == "none" else transform.name
            tdump = transform if transform == "none" else transform.model_dump(**dump)
            for precision in spec.variants.precision:
                q_settings = spec.variants.int8 if precision == "int8" else [None]
                h_settings = spec.variants.fp16 if precision == "fp16" else [None]
                for q, h, (batch, dims) in itertools.product(q_settings, h_settings, points(spec)):
                    qd = q.model_dump(mode="json") if q else None
                    hd = h.model_dump(mode="json") if h and h.fp32_nodes else None  # default fp16: as before
                    target = Target(precision, device, batch, dims, tname, qd, spec.model.source, spec.model.kind,
                                    fp16=hd)
                    reason = unavailable or cls.model_reason(target) or cls.skip_reason(target, options) or \
                        node_lists_reason(cls, target, options, q, h)
                    if fixed is not None and batch != fixed:
                        reason = f"the model's batch is fixed at {fixed} ({why})"
                    if reason is None and isinstance(transform, TransformSpec) and spec.model.kind.module != "eager":
                        reason = f"transforms need an eager torch module; the model is {spec.model.kind.label}"
                    prec_label = precision + (f"-{int8_label(q)}" if q else "") + \
                        (f"-{fp16_label(h)}" if h and h.fp32_nodes else "")
                    shape = "".join(f".{k}{v}" for k, v in sorted(dims.items()))
                    payload = {**base, "backend": b.name, "options": options.model_dump(**dump), "device": device,
                               "precision": precision, "int8": q.model_dump(**dump) if q else None, "transform": tdump,
                               "batch": batch, "dims": dims, **({"fp16": h.model_dump(**dump)} if hd else {})}
                    vid = f"{b.key}.{prec_label}.{tname}.bs{batch}{shape}-{_digest(payload)}"
                    variants.append(Variant(
                        id=vid, backend=b.key, backend_name=b.name, options=options.model_dump(mode="json"),
                        device=device, precision=precision, transform=tname, batch_size=batch, dims=dims, int8=qd,
                        status="skipped" if reason else "planned", reason=reason,
                        settings=cls.describe(options, target), fp16=hd))
    ids = [v.id for v in variants]
    if len(set(ids)) != len(ids):
        dup = sorted({x for x in ids if ids.count(x) > 1})
        raise SpecError("the spec produces duplicate variants", field="variants", found=", ".join(dup))
    return variants
