"""Recompute a corpus run's numbers with nothing but onnxruntime and numpy, and compare them with optbench's rows.

    python corpus/xcheck.py RUN_DIR corpus/<key>

Reads only the run directory (``work/data.npz``, ``reference.json``, ``spec.yaml``, ``results.jsonl``) and the
key's ``reading.py``, the hand-written description of the model: ``OUTPUTS = {output name: {"batch_axis": int |
None, "task": None | {...}, "parts": {...}, "postprocess": fn}}`` and optionally ``postprocess_outputs(dict) ->
dict`` with ``HOOK_OUTPUTS``, the same description of what the hook returns. optbench itself is never imported. The reference is the model file as its package ships it, run on the CPU
at the run's reference batch; each ok row's artifact is run at the row's batch size (the last batch padded by
repeating items from the start, outputs cut to the real items), outputs moved item-major by the reading's batch
axes, inputs fed at the row's shape point. Drift and task metrics follow their documented definitions.

Exit status: 0 when every value agrees (drift to 1e-6 relative, 1e-9 absolute below 1e-6; task metrics to 1e-12),
1 when any disagrees or cannot be checked, 2 on a usage error.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

DRIFT_REL, DRIFT_ABS, DRIFT_SMALL, TASK_ABS = 1e-6, 1e-9, 1e-6, 1e-12
DRIFT_KEYS = ("drift_rel_l2", "drift_cosine", "drift_max_abs", "drift_mean_abs")


# ---------------------------------------------------------------- files of the run and of the corpus key
def load_reading(key_dir: Path) -> Any:
    path = key_dir / "reading.py"
    spec = importlib.util.spec_from_file_location(f"corpus_reading_{key_dir.name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(key_dir))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(key_dir))
    return module


def load_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def model_file(path: str, key_dir: Path) -> Path:
    """``package:PKG/path/in/it.onnx`` found through the import system without importing PKG; else a path
    relative to the key's folder, then the working directory."""
    if path.startswith("package:"):
        pkg, _, rel = path[len("package:"):].partition("/")
        found = importlib.util.find_spec(pkg)
        if found is None:
            raise FileNotFoundError(f"package {pkg} is not installed")
        roots = list(found.submodule_search_locations or []) or [str(Path(found.origin).parent)]
        for root in roots:
            if (Path(root) / rel).exists():
                return Path(root) / rel
        raise FileNotFoundError(f"{rel} is not in package {pkg} ({roots})")
    for base in (key_dir, Path.cwd()):
        if (base / path).exists():
            return base / path
    raise FileNotFoundError(path)


def last_rows(path: Path) -> list[dict]:
    rows: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            rows[row["variant_id"]] = row
    return list(rows.values())


def eval_split(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    with np.load(path, allow_pickle=False) as f:
        arrays = {k.split("/", 1)[1]: f[k] for k in f.files if k.startswith("eval/")}
    labels = arrays.pop("__labels__", None)
    return arrays, labels


# ---------------------------------------------------------------- feeding the model
class Feeder:
    """Item-major data fed in the model's layout: ``batch`` in the spec's input shape is the batch axis,
    ``value:`` inputs are constants; symbolic dims are cropped to the point's size (or zero-padded where the
    spec's ``data.fit`` is pad)."""

    def __init__(self, spec: dict, data: dict[str, np.ndarray], dims: dict[str, int]) -> None:
        self.inputs = spec["inputs"]
        fit = (spec.get("data") or {}).get("fit", "crop")
        self.data = {}
        for inp in self.inputs:
            if inp.get("value") is not None:
                continue
            arr = data[inp["name"]]
            item_shape = [d for d in inp["shape"] if d != "batch"]
            for axis, d in enumerate(item_shape, start=1):
                if isinstance(d, str) and d in dims and arr.shape[axis] != dims[d]:
                    want, have = dims[d], arr.shape[axis]
                    if want < have:
                        arr = np.take(arr, np.arange(want), axis=axis)
                    elif fit == "pad":
                        pad = [(0, 0)] * arr.ndim
                        pad[axis] = (0, want - have)
                        arr = np.pad(arr, pad)
                    else:
                        raise ValueError(f"input {inp['name']}: point {d}={want} is longer than the data ({have}) "
                                         f"and data.fit is {fit}")
            self.data[inp["name"]] = arr

    def __len__(self) -> int:
        return len(next(iter(self.data.values())))

    def feeds(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        out = {}
        for inp in self.inputs:
            name, shape = inp["name"], inp["shape"]
            if inp.get("value") is not None:
                out[name] = np.asarray(inp["value"], dtype=inp["dtype"]).reshape(
                    [d if isinstance(d, int) else 1 for d in shape])
            elif "batch" in shape:
                out[name] = np.ascontiguousarray(np.moveaxis(self.data[name][idx], 0, shape.index("batch")))
            else:
                out[name] = np.ascontiguousarray(self.data[name][idx[0]])
        return out

    def batches(self, size: int):
        """Every batch exactly ``size`` items; the last one padded by repeating items from the start."""
        n = len(self)
        for start in range(0, n, size):
            yield self.feeds(np.arange(start, start + size) % n), min(size, n - start)


def session(path: Path, settings: dict | None):
    import onnxruntime as ort

    ort.set_default_logger_severity(3)  # a graph's wrongly declared output shapes warn on every run
    if settings is None:  # the reference: the file as given, onnxruntime's defaults
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    so = ort.SessionOptions()
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL, "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED, "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[settings.get("graph_optimization", "all")]
    if settings.get("threads"):
        so.intra_op_num_threads = int(settings["threads"])
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run_items(sess, feeder: Feeder, batch: int, axes: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict]:
    """Every output over every item, item-major by ``axes``; and the shapes fed in the first batch."""
    names = [o.name for o in sess.get_outputs()]
    wanted = {i.name for i in sess.get_inputs()}
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    fed = None
    for feeds, real in feeder.batches(batch):
        feeds = {k: v for k, v in feeds.items() if k in wanted}
        if fed is None:
            fed = {k: list(v.shape) for k, v in feeds.items()}
        for name, value in zip(names, sess.run(names, feeds)):
            arr = np.asarray(value)
            if arr.dtype.kind in "fc":
                arr = arr.astype(np.float32, copy=False)
            axis = axes[name]
            if axis is None:
                continue
            arr = arr[None] if axis == "stack" else np.moveaxis(arr, axis, 0)
            chunks[name].append(arr[:real])
    return {n: np.concatenate(c) for n, c in chunks.items() if c}, fed


# ---------------------------------------------------------------- drift
def drift(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    o = out.astype(np.float64).reshape(len(out), -1)
    r = ref.astype(np.float64).reshape(len(ref), -1)
    d = o - r
    norm_r = float(np.sqrt((r * r).sum()))
    norm_d = float(np.sqrt((d * d).sum()))
    cos = []
    for a, b in zip(o, r):
        na, nb = float(np.sqrt((a * a).sum())), float(np.sqrt((b * b).sum()))
        cos.append(float((a * b).sum()) / (na * nb) if na > 0 and nb > 0 else (1.0 if na == nb == 0 else 0.0))
    return {"drift_rel_l2": norm_d / norm_r if norm_r > 0 else norm_d, "drift_cosine": float(np.mean(cos)),
            "drift_max_abs": float(np.abs(d).max()) if d.size else 0.0,
            "drift_mean_abs": float(np.abs(d).mean()) if d.size else 0.0}


def exact(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    same = (out == ref).reshape(len(ref), -1)
    return {"exact_element_rate": float(same.mean()) if same.size else 1.0,
            "exact_item_rate": float(same.all(1).mean()) if len(same) else 1.0}


# ---------------------------------------------------------------- tasks
def classification(task: dict, out: np.ndarray, ref: np.ndarray, labels, arrays) -> dict:
    o, r = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
    k = min(task.get("top_k", 5), o.shape[1] - 1)  # a top-k over every class cannot fail: k below the class count
    want = r.argmax(1)
    topk = np.argsort(-o, axis=1)[:, :k]
    row = {"top1_agreement": float(np.mean(o.argmax(1) == want)),
           "topk_agreement": float(np.mean([w in t for w, t in zip(want, topk)])) if k >= 1 else None,
           "task_accuracy": None}
    if labels is not None and labels.ndim == 1 and len(labels) == len(o) and labels.dtype.kind in "iu":
        row["task_accuracy"] = float(np.mean(o.argmax(1) == labels))
    return row


def greedy_path(seq: np.ndarray, blank: int) -> tuple[int, ...]:
    """One item's CTC greedy decode: (T, C) scores or (T,) class ids -> ids, repeats merged, blanks dropped."""
    best = seq if seq.ndim == 1 else seq.argmax(-1)
    ids, prev = [], None
    for c in best.tolist():
        if c != prev and c != blank:
            ids.append(int(c))
        prev = c
    return tuple(ids)


def levenshtein(a, b) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diag, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (x != y))
    return row[-1]


def rates(got: list, want: list) -> tuple[float, float]:
    exact_rate = float(np.mean([g == w for g, w in zip(got, want)])) if want else 1.0
    chars = sum(len(w) for w in want)
    errors = sum(levenshtein(g, w) for g, w in zip(got, want))
    return exact_rate, (errors / chars if chars else float(errors > 0))


def ctc(task: dict, out: np.ndarray, ref: np.ndarray, labels, arrays) -> dict:
    blank = task["blank"]
    got = [greedy_path(x, blank) for x in out]
    want = [greedy_path(x, blank) for x in ref]
    strip = task.get("strip_class")  # a space class whose leading/trailing runs are ignored
    if strip is not None:
        def trim(s):
            s = list(s)
            while s and s[0] == strip:
                s.pop(0)
            while s and s[-1] == strip:
                s.pop()
            return tuple(s)
        got, want = [trim(g) for g in got], [trim(w) for w in want]
    row = dict(zip(("ctc_exact_rate", "ctc_cer"), rates(got, want)))
    row.update(ctc_label_exact_rate=None, ctc_label_cer=None)
    chars = task.get("charset")
    if chars is not None and labels is not None and labels.dtype.kind == "U" and len(labels) == len(out):
        def text(ids):
            return "".join(chars[c if c < blank else c - 1] if 0 <= (c if c < blank else c - 1) < len(chars)
                           else "\ufffd" for c in ids)
        strings = [text(g).strip() for g in got]
        truth = [str(x).strip() for x in labels]
        row["ctc_label_exact_rate"], row["ctc_label_cer"] = rates(strings, truth)
    return row


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every x1, y1, x2, y2 box of ``a`` with every box of ``b`` (float64)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    w = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    h = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    inter = np.maximum(w, 0.0) * np.maximum(h, 0.0)
    area = lambda x: np.maximum(x[:, 2] - x[:, 0], 0.0) * np.maximum(x[:, 3] - x[:, 1], 0.0)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def detections(cxcywh: np.ndarray, scores: np.ndarray, classes: np.ndarray, task: dict):
    """Top-k of one item: the strongest max(top_k*30, 300) by score, class-aware greedy NMS, no threshold."""
    top_k, nms_iou = task.get("top_k", 10), task.get("nms_iou", 0.7)
    cx, cy, w, h = (cxcywh[:, i].astype(np.float64) for i in range(4))
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    order = list(np.argsort(-scores, kind="stable")[: max(top_k * 30, 300)])
    kept = []
    while order and len(kept) < top_k:
        best = order.pop(0)
        kept.append(best)
        ious = iou_matrix(boxes[best][None], boxes[order])[0] if order else []
        order = [j for j, v in zip(order, ious) if not (classes[j] == classes[best] and v > nms_iou)]
    kept = np.asarray(kept, dtype=np.int64)
    return boxes[kept], scores[kept], classes[kept]


def decode_item(task: dict, pred: np.ndarray, i: int, arrays: dict | None):
    fmt = task["format"]
    if fmt == "yolov8":  # (4 + classes, anchors)
        b0, b1 = task.get("boxes", (0, 4))
        s0, s1 = task.get("scores", (4, pred.shape[0]))
        cls = pred[s0:s1]
        return detections(pred[b0:b1].T, cls.max(0), cls.argmax(0), task)
    if fmt in ("yolov5", "yolox"):  # (anchors, 5 + classes), score = objectness x class
        cls = pred[:, 5:] * pred[:, 4:5]
        return detections(pred[:, :4], cls.max(1), cls.argmax(1), task)
    if fmt == "detr":
        boxes = arrays[task["boxes_output"]][i]
        how = task.get("detr_scores", "softmax")
        if how == "softmax":
            e = np.exp(pred - pred.max(-1, keepdims=True))
            probs = (e / e.sum(-1, keepdims=True))[:, :-1]
        elif how == "sigmoid":
            probs = 1 / (1 + np.exp(-pred))
        else:
            probs = pred
        return detections(boxes, probs.max(1), probs.argmax(1), task)
    raise ValueError(f"unknown detection format {fmt}")


def average_precision_50(dets: list[tuple], labels: np.ndarray, iou: float) -> float:
    """Mean over the labelled classes of all-point interpolated AP (VOC): every detection, best score first,
    is a hit when its best-overlapping box of its class is at IoU >= iou and not taken by a stronger one."""
    aps = []
    for c in sorted({int(x) for x in labels[..., 0].ravel() if x >= 0}):
        scored, n_gt = [], 0
        for (boxes, scores, classes), truth in zip(dets, labels):
            gt = truth[truth[:, 0] == c][:, 1:].astype(np.float64)
            n_gt += len(gt)
            taken = np.zeros(len(gt), bool)
            mine = [k for k in np.argsort(-scores, kind="stable") if classes[k] == c]
            for k in mine:
                overlap = iou_matrix(boxes[k][None], gt)[0] if len(gt) else np.zeros(0)
                j = int(overlap.argmax()) if len(gt) else -1
                hit = j >= 0 and overlap[j] >= iou and not taken[j]
                if hit:
                    taken[j] = True
                scored.append((float(scores[k]), hit))
        if not n_gt:
            aps.append(0.0)
            continue
        scored.sort(key=lambda x: -x[0])
        hits = np.cumsum([h for _, h in scored]) if scored else np.zeros(0)
        recall = np.concatenate([[0.0], hits / n_gt, [1.0]])
        precision = np.concatenate([[1.0], hits / np.arange(1, len(scored) + 1), [0.0]])
        for k in range(len(precision) - 2, -1, -1):  # the precision envelope
            precision[k] = max(precision[k], precision[k + 1])
        aps.append(float(np.sum((recall[1:] - recall[:-1]) * precision[1:])))
    return float(np.mean(aps)) if aps else 0.0


def detection(task: dict, out: np.ndarray, ref: np.ndarray, labels, arrays) -> dict:
    iou = task.get("iou", 0.5)
    tp = n_out = n_ref = 0
    dets = []
    for i in range(len(out)):
        mine = decode_item(task, out[i], i, arrays and arrays[0])
        theirs = decode_item(task, ref[i], i, arrays and arrays[1])
        dets.append(mine)
        n_out, n_ref = n_out + len(mine[0]), n_ref + len(theirs[0])
        if not len(mine[0]) or not len(theirs[0]):
            continue
        m = iou_matrix(mine[0], theirs[0])
        taken = set()
        for a in range(len(mine[0])):  # in the variant's score order, one-to-one, same class, IoU >= iou
            best, best_iou = None, -1.0
            for b in range(len(theirs[0])):
                if b not in taken and mine[2][a] == theirs[2][b] and m[a, b] >= iou and m[a, b] > best_iou:
                    best, best_iou = b, m[a, b]
            if best is not None:
                taken.add(best)
                tp += 1
    precision = tp / n_out if n_out else 1.0
    recall = tp / n_ref if n_ref else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    row = {"det_precision": precision, "det_recall": recall, "det_f1": f1, "det_map50": None}
    if labels is not None and labels.ndim == 3 and labels.shape[-1] == 5 and len(labels) == len(out):
        row["det_map50"] = average_precision_50(dets, labels, iou)
    return row


def dense(task: dict, out: np.ndarray, ref: np.ndarray, labels, arrays) -> dict:
    thr = task.get("threshold", 0.3)
    vals = []
    for a, b in zip(out.reshape(len(out), -1) > thr, ref.reshape(len(ref), -1) > thr):
        union = int((a | b).sum())
        vals.append(int((a & b).sum()) / union if union else 1.0)
    return {"dense_iou": float(np.mean(vals))}


def embedding(task: dict, out: np.ndarray, ref: np.ndarray, labels, arrays) -> dict:
    o = out.reshape(len(out), -1).astype(np.float64)
    r = ref.reshape(len(ref), -1).astype(np.float64)
    uo = o / np.maximum(np.linalg.norm(o, axis=1, keepdims=True), 1e-12)
    ur = r / np.maximum(np.linalg.norm(r, axis=1, keepdims=True), 1e-12)
    row = {"embedding_cosine": float((uo * ur).sum(1).mean()), "retrieval_agreement": None}
    k = min(task.get("top_k", 5), len(o) - 1)
    if k >= 1:
        def neighbours(u):
            sim = u @ u.T
            np.fill_diagonal(sim, -np.inf)
            return np.argsort(-sim, axis=1, kind="stable")[:, :k]
        row["retrieval_agreement"] = float(np.mean([len(set(a) & set(b)) / k
                                                    for a, b in zip(neighbours(uo), neighbours(ur))]))
    return row


def exact_task(task: dict, out: np.ndarray, ref: np.ndarray, labels, arrays) -> dict:
    return exact(out, ref)


TASKS = {"classification": classification, "ctc": ctc, "detection": detection, "dense": dense,
         "embedding": embedding, "exact": exact_task}


# ---------------------------------------------------------------- what the reading says is judged
def views(reading: Any) -> list[dict]:
    """Labels judged: each part of an output, and the whole output where it has a task or no parts."""
    out = []
    # with a model-level hook, what is judged is what the hook returns (HOOK_OUTPUTS, by the same keys)
    described = getattr(reading, "HOOK_OUTPUTS", None) if hasattr(reading, "postprocess_outputs") else None
    for name, o in (described if described is not None else reading.OUTPUTS).items():
        if o.get("batch_axis") is None or o.get("ignore"):
            continue
        for part, p in (o.get("parts") or {}).items():
            out.append({"label": part, "output": name, "slice": (p["axis"], p["start"], p["stop"]),
                        "task": p.get("task"), "postprocess": o.get("postprocess")})
        if o.get("task") is not None or not o.get("parts"):
            out.append({"label": name, "output": name, "slice": None, "task": o.get("task"),
                        "postprocess": o.get("postprocess")})
    return out


def select(arr: np.ndarray, cut) -> np.ndarray:
    if cut is None:
        return arr
    axis, start, stop = cut
    return np.take(arr, np.arange(start, stop), axis=axis)


def judge(reading: Any, outs: dict, refs: dict, labels) -> dict[str, dict]:
    hook = getattr(reading, "postprocess_outputs", None)
    judged: dict[str, dict] = {}
    if hook is not None:
        judged["__raw__"] = {k: drift(outs[k], r) for k, r in refs.items() if r.dtype.kind not in "iub"}
        outs = {k: np.asarray(v) for k, v in hook({k: v.copy() for k, v in outs.items()}).items()}
        refs = {k: np.asarray(v) for k, v in hook({k: v.copy() for k, v in refs.items()}).items()}
    for v in views(reading):
        o, r = select(outs[v["output"]], v["slice"]), select(refs[v["output"]], v["slice"])
        m: dict = {}
        if v["postprocess"] is not None:
            m.update({f"raw_{k}": x for k, x in drift(o, r).items()})
            o, r = np.asarray(v["postprocess"](o.copy())), np.asarray(v["postprocess"](r.copy()))
        m.update(exact(o, r) if r.dtype.kind in "iub" else drift(o, r))
        if v["task"] is not None:
            m.update(TASKS[v["task"]["kind"]](v["task"], o, r, labels, (outs, refs)))
        judged[v["label"]] = m
    return judged


# ---------------------------------------------------------------- comparison
def agrees(key: str, mine: Any, theirs: Any) -> bool:
    if mine is None or theirs is None:
        return mine is None and theirs is None
    mine, theirs = float(mine), float(theirs)
    if math.isnan(mine) or math.isnan(theirs):
        return math.isnan(mine) and math.isnan(theirs)
    if key.startswith(("drift_", "raw_drift_")):
        if max(abs(mine), abs(theirs)) < DRIFT_SMALL:
            return abs(mine - theirs) <= DRIFT_ABS
        return abs(mine - theirs) <= DRIFT_REL * max(abs(mine), abs(theirs))
    return abs(mine - theirs) <= TASK_ABS


def fmt(x: Any) -> str:
    return "-" if x is None else (f"{x:.10g}" if isinstance(x, float) else str(x))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    run_dir, key_dir = Path(argv[0]), Path(argv[1])
    reading = load_reading(key_dir)
    spec = load_yaml(run_dir / "spec.yaml")
    ref_info = json.loads((run_dir / "reference.json").read_text())
    data, labels = eval_split(run_dir / "work" / "data.npz")
    rows = last_rows(run_dir / "results.jsonl")
    model = model_file(spec["model"]["path"], key_dir)
    axes = {name: o.get("batch_axis") for name, o in reading.OUTPUTS.items()}
    problems: list[str] = []
    lines: list[tuple] = []

    # the reading against what optbench read from the model
    theirs = ref_info.get("output_axes") or {}
    for name in sorted(set(axes) | set(theirs)):
        if name not in axes:
            problems.append(f"output {name}: optbench reads batch axis {theirs[name]}, the reading does not describe it")
        elif name not in theirs or theirs[name] != axes[name]:
            problems.append(f"output {name}: batch axis {axes[name]} in the reading, {theirs.get(name, '-')} in optbench")
        lines.append(("(reading)", name, "batch_axis", fmt(theirs.get(name)), fmt(axes.get(name)),
                      "ok" if name in axes and theirs.get(name) == axes[name] else "DIFFERS"))

    ref_batch = int(ref_info["reference_batch"])
    ref_sess = session(model, None)
    refs: dict[str, dict] = {}
    ok_rows = [r for r in rows if r.get("status") == "ok"]
    for row in rows:
        if row.get("status") != "ok":
            lines.append((row["variant_id"], "-", "status", row.get("status"), "not run", "skipped"))
    for row in ok_rows:
        dims = dict(row.get("shape") or {})
        key = json.dumps(dims, sort_keys=True)
        if key not in refs:
            refs[key] = run_items(ref_sess, Feeder(spec, data, dims), ref_batch, axes)[0]
        feeder = Feeder(spec, data, dims)
        outs, fed = run_items(session(Path(row["artifact"]), row.get("settings") or {}), feeder,
                              int(row["batch_size"]), axes)
        vid = row["variant_id"]
        if fed != row.get("fed_shapes"):
            problems.append(f"{vid}: fed {fed}, optbench's row says {row.get('fed_shapes')}")
        lines.append((vid, "-", "fed_shapes", json.dumps(row.get("fed_shapes")), json.dumps(fed),
                      "ok" if fed == row.get("fed_shapes") else "DIFFERS"))
        mine = judge(reading, outs, refs[key], labels)
        raw = mine.pop("__raw__", None)
        reported = row.get("outputs") or {}
        for label in sorted(set(mine) | set(reported)):
            if label not in mine:
                problems.append(f"{vid}: optbench judges '{label}', which the reading does not describe")
                continue
            if label not in reported:
                problems.append(f"{vid}: the reading judges '{label}', which optbench's row lacks")
                continue
            for metric, value in mine[label].items():
                got = reported[label].get(metric)
                same = metric in reported[label] and agrees(metric, value, got)
                lines.append((vid, label, metric, fmt(got), fmt(value), "ok" if same else "DIFFERS"))
                if not same:
                    problems.append(f"{vid} {label} {metric}: optbench {fmt(got)}, xcheck {fmt(value)}")
        for name, m in (raw or {}).items():
            for metric, value in m.items():
                got = ((row.get("raw_outputs") or {}).get(name) or {}).get(metric)
                same = agrees(metric, value, got)
                lines.append((vid, f"{name} (raw)", metric, fmt(got), fmt(value), "ok" if same else "DIFFERS"))
                if not same:
                    problems.append(f"{vid} {name} raw {metric}: optbench {fmt(got)}, xcheck {fmt(value)}")
    if not ok_rows:
        problems.append("no row of status ok to check")

    return verdict(lines, problems, f"{len(ok_rows)} ok rows of {len(rows)} checked against {model.name} at "
                                    f"reference batch {ref_batch}")


def verdict(lines: list[tuple], problems: list[str], checked: str) -> int:
    """Print the table of every value compared, what was checked, and each disagreement: exit 1 on any, else 0."""
    head = ("variant", "output", "metric", "optbench", "xcheck", "")
    width = [max(len(str(x[i])) for x in [head, *lines]) for i in range(len(head))]
    for line in [head, *lines]:
        print("  ".join(str(x).ljust(w) for x, w in zip(line, width)).rstrip())
    print(f"\n{checked}")
    if problems:
        print(f"{len(problems)} disagreement(s):")
        for p in problems:
            print("  " + p)
        return 1
    print("xcheck: every value agrees")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
