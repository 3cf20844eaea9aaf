"""The spec's shared types: a strict model (unknown keys are errors, values frozen) and the small types of many
fields."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Precision = Literal["fp32", "fp16", "bf16", "int8"]
DType = Literal["float32", "float16", "int64", "int32", "bool"]
# a constraint on a row column: "latency_ms_p99 <= 5" (parsed in optbench.report.decide)
CONSTRAINT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")
SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# a size written as a number: "8" (a string) or true is an error, not silently 8 or 1
Count = Annotated[int, Field(strict=True, gt=0)]
# a budget's bound: a NaN would fail (or an infinity pass) every variant, after the whole sweep or search ran
Finite = Annotated[float, Field(allow_inf_nan=False)]


@dataclass(frozen=True)
class ModelFormat:
    """What a model source yields, known from its spec alone (at plan time, before anything loads): the framework
    whose runtime computes the reference (torch, onnx, tensorflow, tflite, openvino), the kind of torch module it
    gives (``eager``: transforms and every torch-side backend; ``scripted``/``exported``: run as loaded), and how an
    ONNX of it is made (None: there is none, and ONNX-based backends are skipped with ``no_onnx``)."""

    framework: str
    label: str
    module: Literal["eager", "scripted", "exported"] | None = None
    onnx: str | None = None
    no_onnx: str = ""
    # the Python modules the source loads with, and those its ONNX conversion needs (``optbench env``)
    loads_with: tuple[str, ...] = ()
    converts_with: tuple[str, ...] = ()


# a torch module's reset (TorchScript, torch.export and python sources): what a model that keeps state between calls
# runs before every call, so that the reference and every torch session answer each batch from one state
RESET = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*|[^:]+:[A-Za-z_][A-Za-z0-9_]*)$")


def reset_field() -> Any:
    return Field(None, pattern=RESET.pattern, description=(
        "What a module that keeps state between calls (a buffer each forward updates: streaming VAD and ASR modules) "
        "runs before every call of the reference and of the torch sessions: a method of the module (reset_states), "
        "or 'file.py:function' called with the module. Without it, a model that answers the same items differently "
        "when run twice stops the run before any variant (see stateful)."))

