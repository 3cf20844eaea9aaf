"""Pydantic models of the experiment spec.

Every model forbids unknown keys and describes every field, so ``optbench schema`` is a
usable editor schema and a typo is an error rather than a silently ignored setting.
Defaults that users tune (measurement, export, budgets) live in ``optbench/configs/``.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from optbench.spec.base import (  # noqa: F401 (the spec's types, here too)
    CONSTRAINT,
    SYMBOL,
    Count,
    DType,
    Finite,
    ModelFormat,
    Precision,
    Strict,
    reset_field,
)
from optbench.spec.defaults import config_defaults
from optbench.spec.model_files import (  # noqa: F401 (the spec's model sources, here too)
    ONNX,
    TORCH,
    ExportedModel,
    OpenvinoModel,
    TensorflowModel,
    TfliteModel,
    TorchScriptModel,
)
from optbench.spec.outputs import (  # noqa: F401 (the spec's output models, here too)
    Budgets,
    ClassificationTask,
    CtcTask,
    CustomTask,
    DenseTask,
    DetectionTask,
    EmbeddingTask,
    OutputPart,
    OutputSpec,
)
from optbench.spec.quant import Fp16Settings, Int8Settings  # noqa: F401 (the spec's precision settings, here too)
from optbench.spec.search import SearchSettings
from optbench.spec.serving import ServingSpec


# ---------------------------------------------------------------- model sources
class TorchvisionModel(Strict):
    kind: ClassVar[ModelFormat] = TORCH
    source: Literal["torchvision"] = Field(description="Build a torchvision classification model by name.")
    name: str = Field(description="torchvision model name, e.g. resnet18.")
    weights: str | None = Field(None, description="Local state_dict file (.pt/.pth); random init when absent.")
    num_classes: PositiveInt | None = Field(None, description="Classifier width; the torchvision default when absent.")


class _EntrypointCall(Strict):
    """A Python function named in the spec, with keyword arguments (python model and data sources)."""

    entrypoint: str = Field(description="'path/to/file.py:function' or 'package.module:function'.")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments passed to the function.")

    @field_validator("entrypoint")
    @classmethod
    def _has_function(cls, v: str) -> str:
        if v.count(":") != 1 or not all(v.split(":")):
            raise ValueError(f"expected 'path/or/module:function', found {v!r}")
        return v


class PythonModel(_EntrypointCall):
    kind: ClassVar[ModelFormat] = TORCH
    source: Literal["python"] = Field(description="Call a Python function that returns an nn.Module.")
    reset: str | None = reset_field()


class OnnxModel(Strict):
    kind: ClassVar[ModelFormat] = ONNX
    source: Literal["onnx"] = Field(description="An existing ONNX file; the reference is then ONNX Runtime CPU fp32.")
    path: str = Field(description="Path of the .onnx file, or 'package:NAME/path/in/package.onnx' for a file "
                                  "shipped inside an installed package (found without importing it).")


class TransformersModel(Strict):
    kind: ClassVar[ModelFormat] = TORCH
    source: Literal["transformers"] = Field(description="A local Hugging Face model directory, loaded offline.")
    path: str = Field(description="Directory with config.json and weights, or 'package:NAME' for a directory shipped in an installed package.")
    pooling: Literal["mean", "cls", "none"] = Field(
        "mean", description="How token states become one output per item: mean over the attention mask, the first token, or none (last_hidden_state).")
    normalize: bool = Field(True, description="L2-normalise the pooled embedding (sentence-transformers style).")


ModelSpec = Annotated[TorchvisionModel | PythonModel | OnnxModel | TransformersModel | TorchScriptModel | ExportedModel
                      | TensorflowModel | TfliteModel | OpenvinoModel, Field(discriminator="source")]


# ---------------------------------------------------------------- inputs and data
class InputSpec(Strict):
    name: str = Field(description="Input name; also the ONNX graph input name.")
    shape: list[int | str] = Field(description="Dimensions; a name (batch, seq) is a dynamic axis. 'batch' may sit on "
                                               "any axis (state tensors: [2, batch, 128]); [] is a scalar.")
    dtype: DType = Field("float32", description="Element type.")
    range: tuple[float, float] | None = Field(
        None, description="[low, high) of synthetic values: integers (token ids) or floats drawn uniformly "
                          "(e.g. [0, 1] for images); absent: integers in [0, 2), floats standard normal.")
    value: float | None = Field(None, description="A constant fed on every call (e.g. a sample rate: sr = 16000); "
                                                  "the input then takes no data.")

    @field_validator("shape")
    @classmethod
    def _dims(cls, v: list[int | str]) -> list[int | str]:
        for d in v:
            if isinstance(d, int) and d <= 0:
                raise ValueError(f"dimensions must be positive, found {d}")
            if isinstance(d, str) and not SYMBOL.match(d):
                raise ValueError(f"a symbolic dimension must be an identifier, found {d!r}")
        if v.count("batch") > 1:
            raise ValueError(f"'batch' may appear once in a shape, found {v}")
        return v

    @model_validator(mode="after")
    def _range(self) -> InputSpec:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range must be [low, high) with low < high, found {list(self.range)}")
        return self

    @property
    def symbols(self) -> list[str]:
        return [d for d in self.shape if isinstance(d, str)]

    @property
    def batch_axis(self) -> int | None:
        """Where the batch dimension sits in the model's layout; None for an input without one."""
        return self.shape.index("batch") if "batch" in self.shape else None

    @property
    def item_shape(self) -> list[int | str]:
        """The shape of one item: the model's shape without its batch axis (data is stored item-major)."""
        return [d for d in self.shape if d != "batch"]


class _Splits(Strict):
    calibration: PositiveInt = Field(256, le=1_000_000, description="Items in the calibration split (int8 calibration).")
    eval: PositiveInt = Field(512, le=1_000_000, description="Items in the evaluation split (accuracy drift).")
    train: int | None = Field(None, ge=0, description="Items in the training split (fine-tune, distillation); all the rest when absent.")
    fit: Literal["crop", "pad", "resize"] = Field(
        "crop", description="How data meets a shape point of another size along a symbolic dim: crop (the first "
                            "elements; a point longer than the data is an error), pad (zeros after the data, crop "
                            "when shorter), resize (linear resampling of float data both ways). Rows record the "
                            "shape actually fed.")


class SyntheticData(_Splits):
    source: Literal["synthetic"] = Field(description="Seeded random inputs; no labels.")
    seq_len: PositiveInt = Field(128, description="Length used for a 'seq' dimension when generating items.")


class DigitsData(_Splits):
    source: Literal["digits"] = Field(description="scikit-learn's bundled 8x8 digits (1,797 labelled images).")


class NpzData(_Splits):
    source: Literal["npz"] = Field(description="Arrays from an .npz file, one per input name.")
    path: str = Field(description="Path of the .npz file.")
    labels: str | None = Field(None, description="Name of the array holding labels, if any: integers (classes), "
                                                  "strings (text lines) or (N, M, 5) [class, x1, y1, x2, y2] boxes "
                                                  "padded with -1.")


class TextData(_Splits):
    source: Literal["text"] = Field(description="Sentences from a text file (one per line), tokenized by the model's tokenizer.")
    path: str = Field(description="Text file, one sentence per line.")


class PythonData(_Splits, _EntrypointCall):
    source: Literal["python"] = Field(description="A function 'file.py:fn' returning {input name: item-major array} "
                                                  "and optionally '__labels__'; called with count and seed.")


DataSpec = Annotated[SyntheticData | DigitsData | NpzData | TextData | PythonData, Field(discriminator="source")]


# ---------------------------------------------------------------- variants
class PruneSettings(Strict):
    method: Literal["l1-structured", "magnitude"] = Field(description="Structured channel pruning or unstructured magnitude sparsity.")
    amount: float = Field(gt=0, lt=1, description="Fraction of channels (structured) or weights (magnitude) removed.")
    finetune_epochs: int = Field(0, ge=0, description="Epochs of fine-tuning on the training split afterwards.")


class DistillSettings(Strict):
    student: ModelSpec = Field(description="The student model; the spec's model is the teacher.")
    epochs: PositiveInt = Field(10, description="Training epochs over the training split.")
    temperature: float = Field(4.0, gt=0, description="Softmax temperature of the KD loss.")
    alpha: float = Field(0.5, ge=0, le=1, description="Weight of the KD term; 1-alpha weights the label loss.")
    lr: float = Field(3e-3, gt=0, description="Adam learning rate.")


class TransformSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Label of this transform in ids and reports.")
    prune: PruneSettings | None = Field(None, description="Pruning settings.")
    distill: DistillSettings | None = Field(None, description="Distillation settings.")

    @model_validator(mode="after")
    def _one(self) -> TransformSpec:
        if (self.prune is None) == (self.distill is None):
            raise ValueError("a transform sets exactly one of 'prune' or 'distill'")
        return self


class VariantAxes(Strict):
    precision: list[Precision] = Field(["fp32"], min_length=1, description="Precisions to build.")
    batch_size: list[Count] = Field([1], min_length=1, description="Batch sizes bound to the 'batch' dimension.")
    shapes: list[dict[str, Count]] | None = Field(
        None, min_length=1, description="Values of the other symbolic dims to measure, e.g. [{seq: 16}, {seq: 128}]; "
        "a 'batch' key here overrides batch_size for that shape.")
    transforms: list[Literal["none"] | TransformSpec] = Field(
        ["none"], min_length=1, description="Model transforms; 'none' is the model as given.")
    int8: list[Int8Settings] = Field(default_factory=lambda: [Int8Settings()], min_length=1,
                                     description="Quantization settings swept for int8 variants.")
    fp16: list[Fp16Settings] = Field(default_factory=lambda: [Fp16Settings()], min_length=1,
                                     description="fp16 graph settings swept for fp16 variants (nodes kept in fp32).")


# ---------------------------------------------------------------- backends, measurement, export
class BackendSpec(Strict):
    name: str = Field(description="Registered backend name (see 'optbench env').")
    options: dict[str, Any] = Field(default_factory=dict, description="Backend options, validated by the backend.")
    label: str | None = Field(None, pattern=r"^[A-Za-z0-9_.-]+$", max_length=64,
                              description="Name in ids, file names and reports when one backend appears twice: "
                                          "letters, digits, '_', '.', '-'.")

    @model_validator(mode="before")
    @classmethod
    def _short_forms(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict) and "name" in v:
            known = {"name", "options", "label"}
            extra = {k: val for k, val in v.items() if k not in known}
            if extra:
                return {**{k: v[k] for k in known if k in v}, "options": {**v.get("options", {}), **extra}}
        return v

    @property
    def key(self) -> str:
        return self.label or self.name


def _measure_default(field: str) -> Any:
    return config_defaults("measure")[field]


class MeasureSettings(Strict):
    mode: Literal["full", "judge"] = Field(
        "full", description="full: build, judge accuracy and time every variant. judge: build and judge accuracy only, "
                            "in one process per variant; nothing is timed and no serving scenario runs (rows carry no "
                            "latency; conformance checks and accuracy gates that need no timing).")
    warmup_s: float = Field(default_factory=lambda: _measure_default("warmup_s"), ge=0, le=3600, description="Warm-up seconds before timing (at least one call; an hour at most).")
    min_iters: PositiveInt = Field(default_factory=lambda: _measure_default("min_iters"), description="Timed iterations at least.")
    min_duration_s: float = Field(default_factory=lambda: _measure_default("min_duration_s"), ge=0, le=3600, description="Timed seconds at least (an hour at most).")
    max_iters: PositiveInt = Field(default_factory=lambda: _measure_default("max_iters"), description="Timed iterations at most.")
    cv_warn: float = Field(default_factory=lambda: _measure_default("cv_warn"), gt=0, description="Coefficient of variation above which the row warns.")
    rounds: PositiveInt = Field(default_factory=lambda: _measure_default("rounds"), le=100,
                                description="Timing windows per variant, each after a pause and a fresh warm-up; "
                                            "min_iters and min_duration_s are shared among them.")
    round_pause_s: float = Field(default_factory=lambda: _measure_default("round_pause_s"), ge=0, le=60,
                                 description="Seconds of pause before each round after the first.")
    processes: PositiveInt = Field(default_factory=lambda: _measure_default("processes"), le=20,
                                   description="Worker processes the rounds are spread over: a process's memory "
                                               "layout and core placement move its latency as a whole, which rounds "
                                               "inside one process cannot sample (pyperf runs many worker processes "
                                               "for this). The first process builds and checks accuracy, the others "
                                               "rebuild from the cache and only time.")
    spread_warn: float = Field(default_factory=lambda: _measure_default("spread_warn"), gt=0,
                               description="Flag the row unstable when its round medians spread more than this.")
    timeout_s: float = Field(default_factory=lambda: _measure_default("timeout_s"), gt=0, description="Wall-clock limit of one variant's worker process.")
    memory_limit_mb: PositiveInt | None = Field(None, description="Memory (MiB of address space) a worker may map beyond the libraries it starts with; no cap when absent. Breaks CUDA workers (CUDA reserves large virtual ranges): prefer rss_limit_mb.")
    rss_limit_mb: PositiveInt | None = Field(
        None, description="Resident memory (MiB) a worker may use before it is stopped and its row fails; absent: 80 % "
                          "of the machine's memory. Works for CPU and CUDA workers alike.")

    @model_validator(mode="after")
    def _iters(self) -> MeasureSettings:
        if self.max_iters < self.min_iters:
            raise ValueError(f"max_iters ({self.max_iters}) is below min_iters ({self.min_iters})")
        return self


class ExportSettings(Strict):
    opset: int = Field(default_factory=lambda: config_defaults("export")["opset"], ge=7, le=23, description="ONNX opset.")
    simplify: bool = Field(default_factory=lambda: config_defaults("export")["simplify"], description="Run onnxsim after export.")


class Spec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100, description="Experiment name; names the run directory.")
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of data splits, synthetic data and training.")
    description: str | None = Field(None, description="Free text shown in the report.")
    model: ModelSpec = Field(description="The model under test (and the reference).")
    inputs: list[InputSpec] = Field(min_length=1, description="Model inputs in call order.")
    data: DataSpec = Field(description="Where inputs come from; calibration/eval/train splits are disjoint.")
    variants: VariantAxes = Field(default_factory=VariantAxes, description="Axes expanded into variants.")
    backends: list[BackendSpec] = Field(min_length=1, description="Backends to build each variant on.")
    measure: MeasureSettings = Field(default_factory=MeasureSettings, description="Timing settings.")
    export: ExportSettings = Field(default_factory=ExportSettings, description="torch → ONNX export settings.")
    outputs: list[OutputSpec] = Field(
        default_factory=list, description="How outputs are judged: names, parts, tasks and budgets. Outputs not listed "
                                          "are still compared, with the default task.")
    budgets: dict[str, dict[str, Finite]] = Field(
        default_factory=dict, description="Accuracy budgets per precision or variant pattern, over optbench/configs/budgets.yaml.")
    stateful: Literal["check", "accept"] = Field(
        "check", description="Before any variant runs, the reference runs twice on the same items: 'check' stops the "
                             "run where the answers differ (state carried between calls, or nondeterminism) and names "
                             "what settles it (model.reset, the state declared as inputs and outputs); 'accept' "
                             "judges the model as it is, every row warning that the reference does not repeat itself.")
    optional: list[str] = Field(default_factory=list, description="Variant id patterns whose failure is not a violation.")
    postprocess_outputs: str | None = Field(
        None, description="'file.py:fn(outputs: dict) -> dict': a model-level hook that sees every output at once "
                          "(item-major arrays, copies) and returns the outputs to judge (e.g. a multi-head "
                          "detector's heads decoded to boxes and scores); applied to variant and reference alike. "
                          "Rows then say drift_after_postprocess.")
    serving: ServingSpec | None = Field(None, description="Serving scenarios (LoadGen): latency under load, dynamic "
                                                          "batching, peak QPS, concurrency, energy, soak.")
    constraints: list[str] = Field(
        default_factory=list, description="Deployment constraints the recommended variant must meet: 'COLUMN OP "
                                          "NUMBER' over row columns in their units, e.g. 'latency_ms_p99 <= 5'.")
    search: SearchSettings | None = Field(
        None, description="What `optbench tune` searches for: the fastest variant at one point that passes every "
                          "budget and constraint (`optbench run` ignores it).")

    @field_validator("constraints")
    @classmethod
    def _constraints(cls, v: list[str]) -> list[str]:

        from optbench.columns import unknown_column
        from optbench.row import current_name

        for text in v:
            if not (m := CONSTRAINT.match(text)):
                raise ValueError(f"a constraint is 'COLUMN OP NUMBER' with OP one of <=, <, >=, >, found {text!r}")
            if why := unknown_column(current_name(m.group(1))):
                raise ValueError(f"constraint {text.strip()!r}: {why}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Spec:
        names = [i.name for i in self.inputs]
        if len(set(names)) != len(names):
            raise ValueError(f"input names must be unique, found {names}")
        keys = [b.key for b in self.backends]
        if len(set(keys)) != len(keys):
            raise ValueError(f"backends appear twice: {keys}; give one a 'label'")
        for field in ("precision", "batch_size"):
            vals = getattr(self.variants, field)
            if len(set(vals)) != len(vals):
                raise ValueError(f"variants.{field} lists a value twice: {vals}")
        symbols = {s for i in self.inputs for s in i.symbols} - {"batch"}
        given = {k for s in (self.variants.shapes or []) for k in s} - {"batch"}
        if given - symbols:
            raise ValueError(f"variants.shapes names {sorted(given - symbols)}, which no input has; inputs have {sorted(symbols) or 'none'}")
        for shape in self.variants.shapes or []:
            if missing := symbols - set(shape):
                raise ValueError(f"variants.shapes entry {shape} leaves {sorted(missing)} unset")
        if symbols and not self.variants.shapes:
            raise ValueError(f"inputs have dynamic dims {sorted(symbols)}; list their values in variants.shapes")
        if not any(i.batch_axis is not None for i in self.inputs) and set(self.variants.batch_size) != {1}:
            raise ValueError(f"no input has a 'batch' dimension, so batch_size can only be [1]; "
                             f"found {self.variants.batch_size}")
        onames = [o.name for o in self.outputs]
        if len(set(onames)) != len(onames):
            raise ValueError(f"outputs names repeat: {onames}")
        tnames = ["none" if t == "none" else t.name for t in self.variants.transforms]
        if len(set(tnames)) != len(tnames):
            raise ValueError(f"variants.transforms names repeat: {tnames}")
        if self.search is not None:
            self._search_fits(self.search)
        return self

    def _search_fits(self, s: SearchSettings) -> None:
        """The search's point is a point of the spec, its backends are the spec's, its base is a static int8."""
        batches = {shape.get("batch", b) for shape in (self.variants.shapes or [{}]) for b in self.variants.batch_size}
        if s.batch is not None and s.batch not in batches:
            raise ValueError(f"search.batch {s.batch} is not a batch size of the spec ({sorted(batches)})")
        shapes = [{k: v for k, v in shape.items() if k != "batch"} for shape in self.variants.shapes or [{}]]
        if s.shape is not None and s.shape not in shapes:
            raise ValueError(f"search.shape {s.shape} is not one of variants.shapes ({shapes})")
        keys = [b.key for b in self.backends]
        if unknown := [b for b in s.space.backends or [] if b not in keys]:
            raise ValueError(f"search.space.backends names {unknown}, which are not backends of the spec ({keys})")
        base = s.base or next((q for q in self.variants.int8 if q.mode == "static"), None)
        if base is None or base.mode != "static":
            raise ValueError("search needs a static int8 base (search.base, or a static entry in variants.int8): "
                             "node groups fall back from a calibrated Q/DQ graph")
