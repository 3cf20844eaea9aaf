"""The spec's shared types: a strict model (unknown keys are errors, values frozen) and the small types of many
fields."""

from __future__ import annotations

import re
from typing import Annotated, Literal

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
