"""Task metrics, the collapse guard and output flattening on tiny hand-made outputs with known answers."""

from collections import namedtuple

import numpy as np
import pytest

from optbench.measure.drift import collapsed, judge_outputs
from optbench.measure.tasks import TaskContext, ctc_greedy, edit_distance, evaluate, map50
from optbench.outputs import View, flatten_torch
from optbench.spec.models import (
    ClassificationTask,
    CtcTask,
    CustomTask,
    DenseTask,
    DetectionTask,
    EmbeddingTask,
)

CTX = TaskContext()


def test_classification_top1_topk_and_accuracy():
    ref = np.array([[3, 2, 1], [1, 3, 2], [1, 2, 3], [3, 1, 2]], np.float32)
    out = np.array([[3, 2, 1], [3, 2, 1], [2, 3, 1], [1, 3, 2]], np.float32)  # top-1 agrees on item 0 only
    m = evaluate(ClassificationTask(kind="classification", top_k=2), out, ref, np.array([0, 0, 2, 1]), CTX)
    assert m["top1_agreement"] == 0.25
    # reference top-1 (0, 1, 2, 0) among the variant's top-2 ({0,1}, {0,1}, {1,0}, {1,2}): items 0 and 1
    assert m["topk_agreement"] == 0.5
    assert m["task_accuracy"] == 0.75  # argmax (0, 0, 1, 1) against labels (0, 0, 2, 1)


def test_top_k_stays_below_the_class_count_so_that_it_can_fail():
    """The default top_k 5 on a 4-class output: a top-4 always holds the reference's top-1 (1.0 whatever the variant
    does); k is lowered to 3 and the output's metrics say why, and one class leaves the metric out."""
    ref = np.tile(np.array([[4, 3, 2, 1]], np.float32), (4, 1))
    worst = ref[:, ::-1].copy()  # every item's reference top-1 ranked last
    m = evaluate(ClassificationTask(kind="classification"), worst, ref, None, CTX)
    assert m["topk_k"] == 3 and m["topk_agreement"] == 0.0
    assert "top_k 5 on 4 classes cannot fail" in m["topk_note"] and "top-3 agreement instead" in m["topk_note"]
    one = evaluate(ClassificationTask(kind="classification", top_k=2), ref[:, :1], ref[:, :1], None, CTX)
    assert one["topk_agreement"] is None and "left out" in one["topk_note"]
    assert "topk_note" not in evaluate(ClassificationTask(kind="classification", top_k=3), worst, ref, None, CTX)


def _yolo(boxes_scores: list[tuple[tuple, int, float]], classes: int = 3, anchors: int = 9) -> np.ndarray:
    """One item in YOLOv8 layout (4 + classes, anchors), more anchors than channels as in every real YOLOv8 head."""
    pred = np.zeros((4 + classes, anchors), np.float32)
    pred[:4] = np.array([[500.0], [500.0], [1.0], [1.0]])  # unused anchors: tiny boxes far away
    for a, (box, cls, score) in enumerate(boxes_scores):
        pred[:4, a] = box
        pred[4 + cls, a] = score
    return pred


def test_detection_matches_top_k_at_iou():
    ref = _yolo([((50, 50, 20, 20), 0, 0.9), ((150, 150, 40, 40), 1, 0.8)])
    same = _yolo([((51, 50, 20, 20), 0, 0.85), ((150, 152, 40, 40), 1, 0.7)])
    wrong_class = _yolo([((50, 50, 20, 20), 2, 0.9), ((150, 150, 40, 40), 1, 0.8)])
    task = DetectionTask(kind="detection", top_k=2)
    assert evaluate(task, same[None], ref[None], None, CTX)["det_f1"] == 1.0
    m = evaluate(task, wrong_class[None], ref[None], None, CTX)
    assert m["det_precision"] == m["det_recall"] == 0.5
    dead = ref.copy()
    dead[4:] = 0.0  # every class score 0: top-k still yields boxes (class 0, anchor order); one lands by chance
    assert evaluate(task, dead[None], ref[None], None, CTX)["det_f1"] == 0.5


def test_detection_nms_drops_overlapping_duplicates():
    ref = _yolo([((50, 50, 20, 20), 0, 0.9), ((51, 50, 20, 20), 0, 0.89), ((150, 150, 40, 40), 1, 0.8)])
    m = evaluate(DetectionTask(kind="detection", top_k=2), ref[None], ref[None], None, CTX)
    assert m["det_f1"] == 1.0


def test_map50_against_box_labels():
    dets = [(np.array([[40, 40, 60, 60], [0, 0, 5, 5]], np.float32), np.array([0.9, 0.8]), np.array([0, 0]))]
    labels = np.array([[[0, 40, 40, 60, 60], [-1, -1, -1, -1, -1]]], np.float32)
    assert map50(dets, labels) == pytest.approx(1.0)  # the first (best) detection hits the only box
    dets_low = [(dets[0][0], np.array([0.1, 0.8]), dets[0][2])]  # the false positive ranks first
    assert map50(dets_low, labels) == pytest.approx(0.5)


def _probs(seqs: list[list[int]], classes: int = 5) -> np.ndarray:
    out = np.full((len(seqs), len(seqs[0]), classes), 0.01, np.float32)
    for i, seq in enumerate(seqs):
        for t, c in enumerate(seq):
            out[i, t, c] = 0.9
    return out


def test_ctc_greedy_decode_exact_rate_and_cer(tmp_path):
    assert ctc_greedy(_probs([[1, 1, 0, 1, 2, 2, 0]])) == [(1, 1, 2)]
    ref = _probs([[1, 0, 2, 3], [2, 2, 0, 3]])   # "ab c" ids (1, 2, 3) and (2, 3)
    out = _probs([[1, 0, 2, 3], [2, 0, 0, 0]])   # second item loses its last character
    charset = tmp_path / "chars.txt"
    charset.write_text("a\nb\nc\n")
    task = CtcTask(kind="ctc", charset=str(charset), space=True, strip=False)
    m = evaluate(task, out, ref, np.array(["abc", "bc"]), CTX)
    assert m["ctc_exact_rate"] == 0.5
    assert m["ctc_cer"] == pytest.approx(1 / 5)   # one deletion over 3 + 2 reference characters
    assert m["ctc_label_exact_rate"] == 0.5 and m["ctc_label_cer"] == pytest.approx(1 / 5)
    assert edit_distance("kitten", "sitting") == 3


def test_ctc_strip_ignores_margin_spaces():
    space = 4  # the last class is the space (PP-OCR's use_space_char)
    ref = _probs([[space, 1, 2, space]])
    out = _probs([[0, 1, 2, 0]])
    assert evaluate(CtcTask(kind="ctc"), out, ref, None, CTX)["ctc_exact_rate"] == 1.0
    assert evaluate(CtcTask(kind="ctc", strip=False), out, ref, None, CTX)["ctc_exact_rate"] == 0.0


def test_embedding_cosine_and_retrieval_agreement():
    ref = np.eye(4, dtype=np.float32) + 0.1 * np.arange(4)[:, None]
    m = evaluate(EmbeddingTask(kind="embedding", top_k=1), ref * 3, ref, None, CTX)
    assert m["embedding_cosine"] == pytest.approx(1.0) and m["retrieval_agreement"] == 1.0
    shuffled = ref[[0, 1, 3, 2]]
    m = evaluate(EmbeddingTask(kind="embedding", top_k=3), shuffled, ref, None, CTX)
    assert m["retrieval_agreement"] == 1.0  # with k = n - 1 every other item is a neighbour
    assert m["embedding_cosine"] < 1.0


def test_dense_iou_of_thresholded_maps():
    ref = np.zeros((2, 1, 4, 4), np.float32)
    ref[0, 0, :2, :2] = 0.9                  # 4 pixels on
    out = ref.copy()
    out[0, 0, 0, 2] = 0.9                    # 5 on, 4 shared: IoU 0.8; item 1 empty in both: 1
    assert evaluate(DenseTask(kind="dense", threshold=0.5), out, ref, None, CTX)["dense_iou"] == pytest.approx(0.9)


def test_custom_metric_hook(tmp_path):
    hook = tmp_path / "hook.py"
    hook.write_text("def fn(out, ref, labels):\n    return {'gap': float(abs(out - ref).max())}\n")
    m = evaluate(CustomTask(kind="custom", metric=f"{hook}:fn"), np.ones(3), np.zeros(3), None,
                 TaskContext(spec_dir=tmp_path))
    assert m == {"x_gap": 1.0}


def test_collapse_guard():
    rng = np.random.default_rng(0)
    ref = rng.uniform(0, 1, (8, 18, 50)).astype(np.float32)
    assert collapsed(ref + 0.01, ref) is None
    assert "all zero" in collapsed(np.zeros_like(ref), ref)
    assert "NaN" in collapsed(np.where(ref > 0.5, np.nan, ref), ref)
    two = np.where(ref > 0.999, 1.3, 0.0).astype(np.float32)  # a dead int8 head: 0 but for a few anchors
    assert "2 distinct values" in collapsed(two, ref)
    assert collapsed(np.zeros((4, 3)), np.zeros((4, 3))) is None  # a constant reference cannot collapse


def test_a_dead_part_fails_while_the_whole_output_looks_fine():
    """A YOLO-like output: boxes in the hundreds, scores below 1. Scores all zero keep the whole output's cosine
    near 1; judged per part, the scores are collapsed and the worst output is named."""
    rng = np.random.default_rng(1)
    ref = np.concatenate([rng.uniform(0, 320, (16, 4, 100)), rng.uniform(0, 0.3, (16, 3, 100))], 1).astype(np.float32)
    out = ref.copy()
    out[:, 4:] = 0.0
    views = [View("boxes", "o", 1, 0, 4), View("scores", "o", 1, 4, 7), View("o", "o")]
    judged = judge_outputs({"o": out}, {"o": ref}, views, None, CTX)
    assert judged["outputs"]["o"]["drift_cosine"] > 0.99
    assert judged["outputs"]["scores"]["collapsed"] and not judged["outputs"]["boxes"]["collapsed"]
    assert judged["worst_output"] == "scores" and judged["drift_cosine"] == 0.0
    assert judged["collapsed"] == [f"scores: {judged['outputs']['scores']['collapsed']}"]


def test_flatten_torch_outputs_in_a_stable_order():
    import torch

    t = torch.zeros(1)
    assert list(flatten_torch(t)) == ["output"]
    assert list(flatten_torch((t, t, [t]))) == ["output", "output_1", "output_2"]
    assert list(flatten_torch({"logits": t, "aux": {"a": t, "b": t}})) == ["logits", "aux.a", "aux.b"]
    pair = namedtuple("Pair", "boxes scores")
    assert list(flatten_torch(pair(t, t))) == ["boxes", "scores"]
    with pytest.raises(TypeError):
        flatten_torch("no tensor")
