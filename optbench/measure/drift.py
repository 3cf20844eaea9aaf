"""Accuracy drift of a variant's outputs against the reference outputs on the same inputs."""

from __future__ import annotations

import numpy as np


def drift_metrics(out: np.ndarray, ref: np.ndarray, labels: np.ndarray | None = None) -> dict[str, float | None]:
    """max_abs, mean_abs, rel_l2, cosine; top-1 agreement and task accuracy for classifier outputs.

    ``out`` and ``ref`` are (N, ...) arrays; cosine is the mean over items of the per-item
    cosine similarity (for embeddings that is the quantity users compare).
    """
    if out.shape != ref.shape:
        raise ValueError(f"output shape {out.shape} differs from the reference's {ref.shape}")
    o = out.astype(np.float64).reshape(len(out), -1)
    r = ref.astype(np.float64).reshape(len(ref), -1)
    diff = o - r
    ref_norm = np.linalg.norm(r)
    rel_l2 = float(np.linalg.norm(diff) / ref_norm) if ref_norm > 0 else float(np.linalg.norm(diff))
    denom = np.linalg.norm(o, axis=1) * np.linalg.norm(r, axis=1)
    cos = np.where(denom > 0, (o * r).sum(1) / np.where(denom > 0, denom, 1), 1.0)
    row: dict[str, float | None] = {
        "drift_max_abs": float(np.abs(diff).max()) if diff.size else 0.0,
        "drift_mean_abs": float(np.abs(diff).mean()) if diff.size else 0.0,
        "drift_rel_l2": rel_l2,
        "drift_cosine": float(cos.mean()),
        "top1_agreement": None,
        "task_accuracy": None,
    }
    if is_classifier(ref):
        row["top1_agreement"] = float((o.argmax(1) == r.argmax(1)).mean())
        if labels is not None and len(labels) == len(o):
            row["task_accuracy"] = float((o.argmax(1) == labels).mean())
    return row


def is_classifier(ref: np.ndarray) -> bool:
    """(N, C) logits with C > 1 are treated as a classifier's output."""
    return ref.ndim == 2 and ref.shape[1] > 1


def task_accuracy(out: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None or not is_classifier(out):
        return None
    return float((out.argmax(1) == labels).mean())
