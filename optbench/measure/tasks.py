"""Task metrics: what an output means, judged as a user would judge it.

Each task compares a variant's output with the reference's on the same items (and with labels where
the data has them): classification agreement, detections matched by IoU, CTC strings, retrieval
neighbours, thresholded maps, or a user's metric. Values are fractions in [0, 1] unless named
otherwise (``ctc_cer``: edit operations per reference character).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

_TASKS: dict[str, Callable[..., dict[str, float | None]]] = {}

# metrics whose smaller value is better (every other task metric: larger is better)
LOWER_BETTER = {"drift_rel_l2", "drift_max_abs", "drift_mean_abs", "ctc_cer", "ctc_label_cer",
                "raw_drift_rel_l2", "raw_drift_max_abs", "raw_drift_mean_abs"}
TASK_METRICS = {
    "exact": ["exact_element_rate", "exact_item_rate"],  # integer and boolean outputs, always
    "classification": ["top1_agreement", "topk_agreement", "task_accuracy"],
    "detection": ["det_precision", "det_recall", "det_f1", "det_map50"],
    "ctc": ["ctc_exact_rate", "ctc_cer", "ctc_label_exact_rate", "ctc_label_cer"],
    "embedding": ["embedding_cosine", "retrieval_agreement"],
    "dense": ["dense_iou"],
}


@dataclass(frozen=True)
class TaskContext:
    """What some tasks need beyond arrays: the model file (CTC charset in its metadata), the spec's folder."""

    model_path: Path | None = None
    spec_dir: Path | None = None
    arrays: tuple[dict, dict] | None = None  # every (variant, reference) output, for tasks over two outputs (detr)


def task(kind: str):
    def wrap(fn):
        _TASKS[kind] = fn
        return fn
    return wrap


def evaluate(spec: Any, out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None, ctx: TaskContext,
             parts: dict | None = None) -> dict[str, float | None]:
    """The task metrics of ``spec`` (a TaskSpec) for one output."""
    return _TASKS[spec.kind](spec, out, ref, labels, ctx, parts or {})


# ---------------------------------------------------------------- classification
@task("classification")
def classification(spec, out, ref, labels, ctx, parts) -> dict[str, float | None]:
    o, r = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
    # a top-k over every class holds the reference's top-1 whatever the variant does: k stays below the class count
    k = min(spec.top_k, o.shape[1] - 1)
    ref_top1 = r.argmax(1)
    row: dict[str, float | str | None] = {
        "top1_agreement": float((o.argmax(1) == ref_top1).mean()),
        "topk_agreement": float((np.argsort(-o, axis=1)[:, :k] == ref_top1[:, None]).any(1).mean()) if k >= 1 else None,
        "topk_k": int(k) if k >= 1 else None,  # the k of topk_agreement
        "task_accuracy": None,
    }
    if k < spec.top_k:
        row["topk_note"] = (f"top_k {spec.top_k} on {o.shape[1]} classes cannot fail (a top-{o.shape[1]} holds every "
                            "class): " + (f"top-{k} agreement instead" if k >= 1 else "top-k agreement left out"))
    if labels is not None and labels.ndim == 1 and len(labels) == len(o) and np.issubdtype(labels.dtype, np.integer):
        row["task_accuracy"] = float((o.argmax(1) == labels).mean())
    return row


# ---------------------------------------------------------------- detection
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of xyxy boxes a (n, 4) and b (m, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: np.clip(x[:, 2:] - x[:, :2], 0, None).prod(-1)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, keep: int) -> np.ndarray:
    """Greedy class-aware NMS; indices of at most ``keep`` boxes, best first."""
    order = np.argsort(-scores, kind="stable")
    chosen: list[int] = []
    while order.size and len(chosen) < keep:
        i = order[0]
        chosen.append(int(i))
        rest = order[1:]
        same = classes[rest] == classes[i]
        overlap = box_iou(boxes[i : i + 1], boxes[rest])[0]
        order = rest[~(same & (overlap > iou))]
    return np.asarray(chosen, dtype=np.int64)


def decode_yolov8(pred: np.ndarray, spec, parts: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One item (4 + classes, anchors) → top-k (boxes xyxy, scores, classes) after NMS."""
    b_rng = parts.get(spec.boxes, (0, 0, 4))[1:]
    s_rng = parts.get(spec.scores, (0, 4, pred.shape[0]))[1:]
    cx, cy, w, h = pred[b_rng[0] : b_rng[1]]
    cls_scores = pred[s_rng[0] : s_rng[1]]
    return _top_k(np.stack([cx, cy, w, h], axis=1), cls_scores.max(0), cls_scores.argmax(0), spec)


def decode_yolov5(pred: np.ndarray, spec, parts: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One item (anchors, 5 + classes): cx, cy, w, h, objectness, class scores → top-k after NMS."""
    cls_scores = pred[:, 5:] * pred[:, 4:5]
    return _top_k(pred[:, :4], cls_scores.max(1), cls_scores.argmax(1), spec)


def decode_detr(logits: np.ndarray, boxes: np.ndarray, spec) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One item: (queries, classes) logits and (queries, 4) cx, cy, w, h boxes → top-k (DETR needs no NMS, but
    duplicates between queries are dropped the same way)."""
    if spec.detr_scores == "softmax":
        e = np.exp(logits - logits.max(-1, keepdims=True))
        probs = (e / e.sum(-1, keepdims=True))[:, :-1]  # the last class is 'no object'
    elif spec.detr_scores == "sigmoid":
        probs = 1 / (1 + np.exp(-logits))
    else:
        probs = logits
    return _top_k(boxes, probs.max(1), probs.argmax(1), spec)


def _top_k(cxcywh: np.ndarray, scores: np.ndarray, classes: np.ndarray, spec) -> tuple:
    cx, cy, w, h = cxcywh.T
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    pre = np.argsort(-scores, kind="stable")[: max(spec.top_k * 30, 300)]  # NMS over the strongest only
    keep = nms(boxes[pre], scores[pre], classes[pre], spec.nms_iou, spec.top_k)
    idx = pre[keep]
    return boxes[idx], scores[idx], classes[idx]


def check_layout(spec, out: np.ndarray, parts: dict, boxes: np.ndarray | None = None) -> None:
    """The output must have the layout its format decodes; a mismatch names expected and found (a YOLOX output
    decoded as YOLOv8 gives numbers that mean nothing)."""
    found = f"[b, {', '.join(str(d) for d in out.shape[1:])}]"
    if spec.format == "yolov8":  # parts named for the boxes and scores must exist: no silent default channels
        for key in ("boxes", "scores"):
            name = getattr(spec, key)
            if (parts or key in spec.model_fields_set) and name not in parts:
                raise ValueError(f"detection: {key} names part '{name}', which the output does not have (its parts: "
                                 f"{sorted(parts) or 'none'}); name the part holding the {key}, or drop parts")
        ok = out.ndim == 3 and out.shape[1] >= 5 and out.shape[2] > out.shape[1]
        expected = "[b, 4 + classes, anchors] with more anchors than channels"
        other = "format: yolov5 (or yolox) for [b, anchors, 5 + classes]"
    elif spec.format in ("yolov5", "yolox"):
        ok = out.ndim == 3 and out.shape[2] >= 6 and out.shape[1] > out.shape[2]
        expected = "[b, anchors, 5 + classes] with more anchors than channels"
        other = "format: yolov8 for [b, 4 + classes, anchors]"
    else:
        ok = out.ndim == 3 and boxes is not None and boxes.ndim == 3 and boxes.shape[1] == out.shape[1] \
            and boxes.shape[2] == 4
        expected = f"logits [b, queries, classes] and boxes [b, queries, 4] in output '{spec.boxes}'"
        other = "the output names of the logits and boxes"
        if boxes is not None:
            found += f" and boxes [b, {', '.join(str(d) for d in boxes.shape[1:])}]"
    if not ok:
        raise ValueError(f"detection format {spec.format} expects {expected}, found {found}; set {other}")


def _matches(a: tuple, b: tuple, iou: float) -> int:
    """Greedy one-to-one matches of detections a to b (same class, IoU >= iou), a in score order."""
    if not len(a[0]) or not len(b[0]):
        return 0
    m = box_iou(a[0], b[0])
    m[a[2][:, None] != b[2][None, :]] = 0
    used = np.zeros(len(b[0]), bool)
    hits = 0
    for i in range(len(a[0])):
        cand = np.where(~used & (m[i] >= iou))[0]
        if cand.size:
            used[cand[m[i, cand].argmax()]] = True
            hits += 1
    return hits


def _decoder(spec, out, ref, ctx, parts):
    """Per-item decode functions for the variant and the reference, after the layout check."""
    if spec.format == "detr":
        if ctx.arrays is None or spec.boxes not in ctx.arrays[0]:
            have = sorted(ctx.arrays[0]) if ctx.arrays else []
            raise ValueError(f"detection format detr: no output '{spec.boxes}' holds the boxes (outputs: {have})")
        bo, br = ctx.arrays[0][spec.boxes], ctx.arrays[1][spec.boxes]
        check_layout(spec, ref, parts, br)
        return (lambda i: decode_detr(out[i], bo[i], spec)), (lambda i: decode_detr(ref[i], br[i], spec))
    check_layout(spec, ref, parts)
    fn = decode_yolov8 if spec.format == "yolov8" else decode_yolov5
    return (lambda i: fn(out[i], spec, parts)), (lambda i: fn(ref[i], spec, parts))


@task("detection")
def detection(spec, out, ref, labels, ctx, parts) -> dict[str, float | None]:
    tp = n_out = n_ref = 0
    dets = []
    mine, theirs = _decoder(spec, out, ref, ctx, parts)
    for i in range(len(out)):
        do, dr = mine(i), theirs(i)
        dets.append(do)
        tp += _matches(do, dr, spec.iou)
        n_out, n_ref = n_out + len(do[0]), n_ref + len(dr[0])
    precision = tp / n_out if n_out else 1.0
    recall = tp / n_ref if n_ref else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    row: dict[str, float | None] = {"det_precision": precision, "det_recall": recall, "det_f1": f1, "det_map50": None}
    if labels is not None and labels.ndim == 3 and labels.shape[-1] == 5 and len(labels) == len(out):
        row["det_map50"] = map50(dets, labels, spec.iou)
    return row


def map50(dets: list[tuple], labels: np.ndarray, iou: float = 0.5) -> float:
    """Mean over classes of all-point-interpolated AP; labels (N, M, 5) [class, x1, y1, x2, y2], class -1 = pad."""
    classes = sorted({int(c) for c in labels[..., 0].ravel() if c >= 0})
    aps = []
    for c in classes:
        scored: list[tuple[float, bool]] = []
        n_gt = 0
        for (boxes, scores, cls), gt in zip(dets, labels):
            g = gt[gt[:, 0] == c][:, 1:]
            n_gt += len(g)
            mine = np.where(cls == c)[0]
            used = np.zeros(len(g), bool)
            for i in mine[np.argsort(-scores[mine], kind="stable")]:
                ious = box_iou(boxes[i : i + 1], g)[0] if len(g) else np.zeros(0)
                j = int(ious.argmax()) if ious.size else -1
                hit = j >= 0 and ious[j] >= iou and not used[j]
                if hit:
                    used[j] = True
                scored.append((float(scores[i]), hit))
        aps.append(_average_precision(scored, n_gt))
    return float(np.mean(aps)) if aps else 0.0


def _average_precision(scored: list[tuple[float, bool]], n_gt: int) -> float:
    if not n_gt:
        return 0.0
    scored.sort(key=lambda x: -x[0])
    hits = np.cumsum([h for _, h in scored]) if scored else np.zeros(0)
    recall = np.concatenate([[0.0], hits / n_gt, [1.0]]) if scored else np.array([0.0, 1.0])
    precision = np.concatenate([[1.0], hits / np.arange(1, len(scored) + 1), [0.0]]) if scored else np.array([1.0, 0.0])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum((recall[1:] - recall[:-1]) * precision[1:]))


# ---------------------------------------------------------------- CTC
def ctc_greedy(probs: np.ndarray, blank: int = 0) -> list[tuple[int, ...]]:
    """(N, T, C) probabilities, or (N, T) class ids (a graph that ends in ArgMax) → per item the class ids of the
    greedy path: repeats merged, blanks dropped."""
    best = probs if probs.ndim == 2 and probs.dtype.kind in "iu" else probs.argmax(-1)
    out = []
    for seq in best:
        keep = np.ones(len(seq), bool)
        keep[1:] = seq[1:] != seq[:-1]
        out.append(tuple(int(c) for c in seq[keep] if c != blank))
    return out


def _trim(seq: tuple[int, ...], space: int) -> tuple[int, ...]:
    start, stop = 0, len(seq)
    while start < stop and seq[start] == space:
        start += 1
    while stop > start and seq[stop - 1] == space:
        stop -= 1
    return seq[start:stop]


def edit_distance(a: Any, b: Any) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def _string_rates(got: list, want: list) -> tuple[float, float]:
    exact = float(np.mean([g == w for g, w in zip(got, want)])) if want else 1.0
    chars = sum(len(w) for w in want)
    errors = sum(edit_distance(g, w) for g, w in zip(got, want))
    return exact, (errors / chars if chars else float(errors > 0))


def load_charset(spec, ctx: TaskContext) -> list[str]:
    """The characters of classes blank+1, ... (PP-OCR: metadata 'character', one per line; then a space)."""
    if spec.charset is None:
        raise ValueError("ctc: comparing with label strings needs a charset ('metadata:character' or a file)")
    if spec.charset.startswith("metadata:"):
        import onnx

        key = spec.charset.split(":", 1)[1]
        proto = onnx.load(str(ctx.model_path), load_external_data=False)
        meta = {p.key: p.value for p in proto.metadata_props}
        if key not in meta:
            raise ValueError(f"ctc: the model's metadata has no '{key}' (it has {sorted(meta)})")
        chars = meta[key].splitlines()
    else:
        from optbench.paths import resolve_path

        path = resolve_path(spec.charset, (ctx.spec_dir or Path(".")) / "spec.yaml")
        chars = path.read_text(encoding="utf-8").splitlines()
    return chars + ([" "] if spec.space else [])


def ctc_strings(ids: list[tuple[int, ...]], charset: list[str], blank: int = 0) -> list[str]:
    def char(c: int) -> str:
        k = c - 1 if c > blank else c
        return charset[k] if 0 <= k < len(charset) else "\ufffd"
    return ["".join(char(c) for c in seq) for seq in ids]


@task("ctc")
def ctc(spec, out, ref, labels, ctx, parts) -> dict[str, float | None]:
    got, want = ctc_greedy(out, spec.blank), ctc_greedy(ref, spec.blank)
    ids = out.ndim == 2 and out.dtype.kind in "iu"
    if spec.strip and spec.space and (not ids or spec.charset is not None):
        space = len(load_charset(spec, ctx)) if ids else out.shape[-1] - 1  # class ids: the charset's size
        got, want = [_trim(g, space) for g in got], [_trim(w, space) for w in want]
    exact, cer = _string_rates(got, want)
    row: dict[str, float | None] = {"ctc_exact_rate": exact, "ctc_cer": cer, "ctc_label_exact_rate": None,
                                    "ctc_label_cer": None}
    if labels is not None and labels.dtype.kind == "U" and len(labels) == len(out):
        text = ctc_strings(got, load_charset(spec, ctx), spec.blank)
        truth = [str(x) for x in labels]
        if spec.strip:
            text, truth = [t.strip() for t in text], [t.strip() for t in truth]
        row["ctc_label_exact_rate"], row["ctc_label_cer"] = _string_rates(text, truth)
    return row


# ---------------------------------------------------------------- embedding, dense, custom
@task("embedding")
def embedding(spec, out, ref, labels, ctx, parts) -> dict[str, float | None]:
    o, r = out.reshape(len(out), -1).astype(np.float64), ref.reshape(len(ref), -1).astype(np.float64)
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731
    uo, ur = unit(o), unit(r)
    row: dict[str, float | None] = {"embedding_cosine": float((uo * ur).sum(1).mean()), "retrieval_agreement": None}
    k = min(spec.top_k, len(o) - 1)
    if k >= 1:
        def neighbours(u: np.ndarray) -> np.ndarray:
            sim = u @ u.T
            np.fill_diagonal(sim, -np.inf)
            return np.argsort(-sim, axis=1, kind="stable")[:, :k]
        no, nr = neighbours(uo), neighbours(ur)
        row["retrieval_agreement"] = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(no, nr)]))
    return row


@task("dense")
def dense(spec, out, ref, labels, ctx, parts) -> dict[str, float | None]:
    o = out.reshape(len(out), -1) > spec.threshold
    r = ref.reshape(len(ref), -1) > spec.threshold
    inter, union = (o & r).sum(1), (o | r).sum(1)
    return {"dense_iou": float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0)))}


@task("custom")
def custom(spec, out, ref, labels, ctx, parts) -> dict[str, float | None]:
    from optbench.paths import import_entrypoint

    fn = import_entrypoint(spec.metric, ctx.spec_dir or Path("."), field="outputs.task.metric")
    try:
        values = fn(out.copy(), ref.copy(), None if labels is None else labels.copy())  # never edits the reference
    except Exception as e:
        raise RuntimeError(f"the metric hook {spec.metric} failed: {e.__class__.__name__}: {e}") from e
    if not isinstance(values, dict):
        raise ValueError(f"the metric hook {spec.metric} returned {type(values).__name__}, not a dict")
    return {f"x_{k}": (None if v is None else float(v)) for k, v in values.items()}


# ---------------------------------------------------------------- integer and boolean outputs
def exact(out: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Class ids, masks, counts: the share of elements equal to the reference's, and of items equal in full."""
    if out.shape != ref.shape:
        return {"exact_element_rate": 0.0, "exact_item_rate": 0.0}
    same = (out == ref).reshape(len(ref), -1)
    return {"exact_element_rate": float(same.mean()) if same.size else 1.0,
            "exact_item_rate": float(same.all(1).mean()) if len(same) else 1.0}
