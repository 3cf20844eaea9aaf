"""Spec models of the model sources that arrive as files of another framework: TorchScript, torch.export programs,
TensorFlow SavedModels and frozen graphs, TFLite flatbuffers and OpenVINO IR. The reference of each is the framework
it was saved by, on the CPU in fp32; every converted artifact is judged against it step by step."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, field_validator

from optbench.spec.base import ModelFormat, Strict, reset_field

TORCH = ModelFormat("torch", "a torch module", module="eager", onnx="torch.onnx.export", loads_with=("torch",))
TRUST = ("Trust the file: run it even if its graph holds ops that read or write files, print, run Python or use the "
         "network, and unpickle a .pt2's objects other than tensors; absent: such a file is refused before it loads "
         "(docs/model-formats.md: 'Which files optbench runs').")
ONNX = ModelFormat("onnx", "an ONNX file", onnx="as given", loads_with=("onnx", "onnxruntime"))


class TorchScriptModel(Strict):
    kind: ClassVar[ModelFormat] = ModelFormat(
        "torch", "a TorchScript module", module="scripted", onnx="torch.onnx.export", loads_with=("torch",))
    source: Literal["torchscript"] = Field(description="A TorchScript file (.pt/.pth from torch.jit.save), loaded by "
                                                       "torch.jit.load; the reference is it, run by torch on the CPU.")
    path: str = Field(description="Path of the TorchScript file.")
    reset: str | None = reset_field()
    trust: bool = Field(False, description=TRUST)


class ExportedModel(Strict):
    kind: ClassVar[ModelFormat] = ModelFormat(
        "torch", "a torch.export program", module="exported", onnx="torch.onnx.export", loads_with=("torch",))
    source: Literal["exported"] = Field(description="A torch.export program (.pt2 from torch.export.save), loaded by "
                                                    "torch.export.load; its dynamic dims are the ones it was exported "
                                                    "with.")
    path: str = Field(description="Path of the .pt2 file.")
    reset: str | None = reset_field()
    trust: bool = Field(False, description=TRUST)


class TensorflowModel(Strict):
    kind: ClassVar[ModelFormat] = ModelFormat(
        "tensorflow", "a TensorFlow model", onnx="tf2onnx", loads_with=("tensorflow",), converts_with=("tf2onnx",))
    source: Literal["tensorflow"] = Field(description="A TensorFlow SavedModel folder or a frozen graph (.pb); the "
                                                      "reference is TensorFlow on the CPU, ONNX comes from tf2onnx.")
    path: str = Field(description="SavedModel folder (holding saved_model.pb) or frozen GraphDef file (.pb).")
    signature: str | None = Field(
        None, description="SavedModel signature to run and convert; absent: the only one, or 'serving_default' "
                          "(TensorFlow Serving's default) when there are several and it is one of them.")
    tag: str = Field("serve", description="SavedModel meta-graph tag.")
    trust: bool = Field(False, description=TRUST)
    outputs: list[str] | None = Field(
        None, min_length=1, description="Frozen graph only: the output tensors as TensorFlow names them ('node:N'; "
                                        "'node' alone is 'node:0'); absent: every output of the graph's one terminal "
                                        "node.")

    @field_validator("path")
    @classmethod
    def _not_keras(cls, v: str) -> str:
        if v.endswith((".keras", ".h5")):
            raise ValueError("a Keras file is not a SavedModel: export it with model.export(folder) and name the "
                             "folder")
        return v


class TfliteModel(Strict):
    kind: ClassVar[ModelFormat] = ModelFormat(
        "tflite", "a TFLite flatbuffer", onnx="tf2onnx", loads_with=("ai_edge_litert", "tensorflow"),
        converts_with=("tf2onnx",))
    source: Literal["tflite"] = Field(description="A .tflite flatbuffer; the reference is the LiteRT interpreter on the "
                                                  "CPU (ai_edge_litert, or the one inside TensorFlow), ONNX comes from "
                                                  "tf2onnx.")
    path: str = Field(description="Path of the .tflite file.")
    signature: str | None = Field(None, description="Signature to run when the file has several; absent: the only one.")


class OpenvinoModel(Strict):
    kind: ClassVar[ModelFormat] = ModelFormat(
        "openvino", "an OpenVINO IR", no_onnx="OpenVINO writes no ONNX: an IR runs on the OpenVINO backend only",
        loads_with=("openvino",))
    source: Literal["openvino"] = Field(description="An OpenVINO IR (.xml with its .bin beside it); the reference is "
                                                    "OpenVINO on the CPU in f32, and only the OpenVINO backend runs "
                                                    "it.")
    path: str = Field(description="Path of the IR's .xml file.")

    @field_validator("path")
    @classmethod
    def _xml(cls, v: str) -> str:
        if not v.endswith(".xml"):
            raise ValueError("an OpenVINO IR is named by its .xml file (the .bin sits beside it)")
        return v
