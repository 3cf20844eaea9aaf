"""The spec's ``outputs:`` section: each output (or part of one) and the task that judges it."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, PositiveInt, model_validator

from optbench.spec.base import Strict

# ---------------------------------------------------------------- outputs and the tasks that judge them
Budgets = dict[str, dict[str, float]]
_BUDGETS_DOC = "Budgets of this output (or part) per precision or variant pattern, over the spec's budgets."


class ClassificationTask(Strict):
    kind: Literal["classification"] = Field(description="Logits/probabilities (N, C): top-1/top-k agreement with the "
                                                        "reference; accuracy when the data has integer labels.")
    top_k: PositiveInt = Field(5, description="k of the top-k agreement (the reference's top-1 among the variant's k); "
                                              "at most the class count less one, since a top-k over every class "
                                              "cannot fail: a larger k is lowered and the output's metrics say so "
                                              "(topk_note).")


class DetectionTask(Strict):
    kind: Literal["detection"] = Field(description="Decode boxes and scores, NMS, then match the reference's top-k "
                                                   "detections at IoU >= iou: precision/recall/F1; mAP@0.5 against box "
                                                   "labels when the data has them.")
    format: Literal["yolov8", "yolov5", "yolox", "detr"] = Field(
        "yolov8", description="The output layout, checked before decoding (a mismatch names expected and found): "
                              "yolov8/yolov11: (N, 4 + classes, anchors), boxes cx, cy, w, h, class scores; "
                              "yolov5 and yolox (decoded in the graph): (N, anchors, 5 + classes), boxes cx, cy, w, h, "
                              "objectness, class scores (score = objectness x class); detr: this output holds the "
                              "class logits (N, queries, classes) and 'boxes' names the output with the (N, queries, "
                              "4) cx, cy, w, h boxes.")
    boxes: str = Field("boxes", description="yolov8: part holding the 4 box channels, when the output is split into "
                                            "parts; detr: the output holding the boxes.")
    scores: str = Field("scores", description="Part holding the class scores, when the output is split into parts.")
    detr_scores: Literal["softmax", "sigmoid", "probabilities"] = Field(
        "softmax", description="detr: how logits become scores: softmax with the last class 'no object' (DETR), "
                               "sigmoid per class (RT-DETR, Deformable DETR), or already probabilities.")
    top_k: PositiveInt = Field(10, description="Detections kept per item, by score after NMS (no score threshold, so a "
                                               "model that finds little on the data still has boxes to compare).")
    iou: float = Field(0.5, gt=0, le=1, description="IoU at which two detections of one class match.")
    nms_iou: float = Field(0.7, gt=0, le=1, description="IoU above which NMS drops the lower-scored box of a class.")


class CtcTask(Strict):
    kind: Literal["ctc"] = Field(description="(N, T, C) per-step class probabilities, greedy CTC decode: exact-string "
                                             "rate and character error rate against the reference (and label strings).")
    blank: int = Field(0, ge=0, description="Index of the CTC blank.")
    charset: str | None = Field(
        None, description="Characters of classes blank+1...: 'metadata:KEY' reads them from the ONNX file's metadata "
                          "(PP-OCR stores them under 'character'), or a text file with one character per line. Needed "
                          "only to compare with label strings.")
    space: bool = Field(True, description="A space character follows the charset (PP-OCR's use_space_char): the "
                                          "last class.")
    strip: bool = Field(True, description="Ignore leading and trailing spaces when comparing strings (a line crop's "
                                          "margins read as spaces by some models and not by others).")


class EmbeddingTask(Strict):
    kind: Literal["embedding"] = Field(description="Vectors (N, D): cosine to the reference and top-k retrieval "
                                                   "agreement (neighbours among the eval items).")
    top_k: PositiveInt = Field(5, description="Neighbours compared per item.")


class DenseTask(Strict):
    kind: Literal["dense"] = Field(description="Maps (segmentation, text probability): IoU of the thresholded maps.")
    threshold: float = Field(0.3, description="A pixel is on where the map exceeds this value.")


class CustomTask(Strict):
    kind: Literal["custom"] = Field(description="A user metric: 'file.py:fn(out, ref, labels) -> {name: value}'.")
    metric: str = Field(description="'path/to/file.py:function'; its metrics become columns named x_<name>.")


TaskSpec = Annotated[ClassificationTask | DetectionTask | CtcTask | EmbeddingTask | DenseTask | CustomTask,
                     Field(discriminator="kind")]


class OutputPart(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Name of the part in rows and budgets.")
    start: int = Field(ge=0, description="First index of the part along the output's split axis.")
    stop: int = Field(gt=0, description="One past the last index.")
    task: TaskSpec | None = Field(None, description="The task that judges this part, if any.")
    budgets: Budgets = Field(default_factory=dict, description=_BUDGETS_DOC)

    @model_validator(mode="after")
    def _order(self) -> OutputPart:
        if self.stop <= self.start:
            raise ValueError(f"part '{self.name}': stop {self.stop} must exceed start {self.start}")
        return self


class OutputSpec(Strict):
    name: str = Field(description="The model output: an ONNX graph output name, or for torch models the flattened "
                                  "name (output, output_1, ... for tuples; keys for dicts and named tuples).")
    axis: int | None = Field(None, description="Axis of the model's output along which 'parts' split it.")
    parts: list[OutputPart] = Field(default_factory=list, description="Named slices along 'axis', each judged alone.")
    task: TaskSpec | None = Field(None, description="The task that judges the whole output; absent: chosen from the "
                                                    "model and data (classifier logits with labels, embeddings).")
    postprocess: str | None = Field(None, description="'file.py:fn(array) -> array' applied to variant and reference "
                                                      "alike before judging (e.g. a decode).")
    ignore: bool = Field(False, description="Do not judge this output (e.g. a recurrent state passed through).")
    batch_axis: int | Literal["none"] | None = Field(
        None, description="Axis of the model's output that holds the batch, where optbench cannot see it (a static "
                          "batch of 1, a graph that declares another shape); 'none': the output holds no batch "
                          "axis. Absent: read from the model at two batch sizes, and checked.")
    budgets: Budgets = Field(default_factory=dict, description=_BUDGETS_DOC)

    @model_validator(mode="after")
    def _parts(self) -> OutputSpec:
        if self.parts and self.axis is None:
            raise ValueError(f"output '{self.name}' has parts but no 'axis' to split along")
        names = [p.name for p in self.parts]
        if len(set(names)) != len(names):
            raise ValueError(f"output '{self.name}': part names repeat: {names}")
        return self
