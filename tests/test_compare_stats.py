import numpy as np

from optbench.measure.compare import median_ratio


def test_same_samples_are_not_significant_and_a_planted_slowdown_is():
    rng = np.random.default_rng(0)
    base = 1.0 + rng.exponential(0.05, 400)
    same = median_ratio(base, base)
    assert same.ratio == 1.0 and not same.significant
    slow = median_ratio(base * 1.3, base)
    assert slow.ratio == np.float64(1.3) or abs(slow.ratio - 1.3) < 1e-9
    assert slow.significant and slow.low > 1.2 and slow.p_value < 1e-6
    jitter = median_ratio(base * (1 + rng.uniform(-0.01, 0.01, base.size)), base)
    assert jitter.high > 0.99 and jitter.low < 1.02
