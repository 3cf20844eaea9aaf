"""The precision settings of variants: int8 quantization (mode, calibration, node lists) and fp16 graphs (nodes
kept in fp32)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from optbench.spec.base import Strict


class Int8Settings(Strict):
    mode: Literal["static", "dynamic", "modelopt"] = Field(
        "static", description="static: ORT calibrated QDQ; dynamic: ORT dynamic (weights only, activations at run time); modelopt: PyTorch PTQ exported as Q/DQ ONNX.")
    method: Literal["minmax", "entropy", "percentile"] = Field("minmax", description="Calibration method (static).")
    per_channel: bool = Field(True, description="Per-channel weight scales.")
    samples: PositiveInt = Field(256, description="Calibration items drawn from the calibration split.")
    activations: Literal["u8", "s8"] = Field("u8", description="Activation type; U8 is the fast choice on x86 VNNI.")
    op_types: list[str] | None = Field(
        None, min_length=1, description="ONNX op types to quantize (static/dynamic), e.g. [MatMul] for transformers, "
                                        "whose Add/Softmax/LayerNorm activations have outliers that 8 bits "
                                        "cannot hold; absent: every op type onnxruntime can quantize.")
    exclude_nodes: list[str] | None = Field(
        None, min_length=1, description="Node names (fnmatch patterns) kept in float (static/dynamic): e.g. a "
                                        "detector's head, or a front end that sees raw audio; each pattern must "
                                        "match a node of the graph.")
    fp16_nodes: list[str] | None = Field(
        None, min_length=1, description="static: node names (fnmatch patterns) kept out of int8 and run in fp16 (a "
                                        "mixed graph: int8 where it is safe, fp16 here, fp32 for exclude_nodes); "
                                        "each pattern must match a node of the graph, and exclude_nodes wins where "
                                        "both match.")
    symmetric_activations: bool = Field(
        False, description="static: activation scales symmetric about zero (zero point 0), which TensorRT needs; "
                           "onnxruntime's default fits an asymmetric range.")
    quantize_bias: bool = Field(
        True, description="static: biases as int32 Q/DQ (onnxruntime's default); false keeps them float, which "
                          "TensorRT needs (its DequantizeLinear takes 8-bit inputs only).")

    @model_validator(mode="after")
    def _fp16_static(self) -> Int8Settings:
        if self.fp16_nodes and self.mode != "static":
            raise ValueError(f"fp16_nodes makes a mixed int8/fp16 graph from a static Q/DQ one; mode is {self.mode!r}")
        return self


class Fp16Settings(Strict):
    fp32_nodes: list[str] | None = Field(
        None, min_length=1, description="Node names (fnmatch patterns) kept in fp32 in the fp16 graph, with casts "
                                        "around them (besides the ops optbench always keeps in fp32 and nodes "
                                        "whose weights exceed fp16's range); each pattern must match a node.")
