import numpy as np
import pytest

from optbench.measure import drift_metrics


def test_identical_outputs_have_zero_drift():
    ref = np.random.default_rng(0).standard_normal((32, 10)).astype(np.float32)
    d = drift_metrics(ref.copy(), ref, labels=ref.argmax(1))
    assert d["drift_max_abs"] == 0 and d["drift_rel_l2"] == 0
    assert d["drift_cosine"] == pytest.approx(1.0)
    assert d["top1_agreement"] == 1.0 and d["task_accuracy"] == 1.0


def test_known_perturbation():
    ref = np.ones((4, 3), dtype=np.float32)
    out = ref.copy()
    out[0, 0] = 2.0
    d = drift_metrics(out, ref)
    assert d["drift_max_abs"] == pytest.approx(1.0)
    assert d["drift_mean_abs"] == pytest.approx(1 / 12)
    assert d["drift_rel_l2"] == pytest.approx(1 / np.sqrt(12))
    cos0 = 4 / (np.sqrt(6) * np.sqrt(3))
    assert d["drift_cosine"] == pytest.approx((cos0 + 3) / 4)


def test_top1_agreement_and_task_accuracy():
    ref = np.array([[1, 0], [0, 1], [1, 0], [0, 1]], dtype=np.float32)
    out = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=np.float32)
    d = drift_metrics(out, ref, labels=np.array([0, 1, 1, 1]))
    assert d["top1_agreement"] == 0.75
    assert d["task_accuracy"] == 0.5


def test_embeddings_have_no_top1():
    ref = np.random.default_rng(1).standard_normal((8, 4, 16))
    d = drift_metrics(ref * 2, ref)
    assert d["top1_agreement"] is None
    assert d["drift_cosine"] == pytest.approx(1.0)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        drift_metrics(np.zeros((2, 3)), np.zeros((2, 4)))
