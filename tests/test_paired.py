"""The paired latency verdict on synthetic timings (seeded, no real timing): pairs of re-timing processes whose
rounds take turns in ABBA order, against the verdict on two runs' own rounds."""

import numpy as np
import pytest

from optbench.measure.paired import (
    CHANGE_CONFIDENCE,
    CHANGE_PAIRS,
    CONFIDENCE,
    MIN_PAIRS,
    Pair,
    batches,
    decide_paired,
    level,
    open_verdict,
    rank_interval,
    schedule,
    settle,
)
from optbench.measure.verdict import verdict_for


def _retime(cost: dict[str, float], speed, pairs: int = 8, within: float = 0.01, seed: int = 0, order=None,
            slowed: bool = True):
    """Pairs of a simulated re-timing: each pair's two processes take turns, five rounds each, in ABBA order (or
    ``order(k)``); round ``t`` of the whole re-timing (10 per pair) runs at machine speed ``speed(t)`` (a factor on
    latency), at ``cost[side]`` ms times that factor, with ``within`` relative noise and one slowed round per
    process (interference only adds time) where ``slowed``."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(pairs):
        sides = order(k) if order else schedule(5, rng)
        rounds: dict[str, list[float]] = {"baseline": [], "candidate": []}
        for j, side in enumerate(sides):
            rounds[side].append(cost[side] * speed(10 * k + j) * (1 + rng.normal(0, within)))
        for side in rounds:
            if slowed:
                rounds[side][rng.integers(5)] *= 1.4
        out.append(Pair(level(rounds["baseline"]), level(rounds["candidate"]), sides[0]))
    return out


def _row(ms: float, probe_us: float, rng) -> dict:
    """A run's row timed at the defaults (five rounds in one worker process)."""
    return {"status": "ok", "latency_ms_p50": ms, "latency_ms_rounds": list(ms * (1 + rng.normal(0, 0.005, 5))),
            "probe_us_rounds": [probe_us] * 5, "timing_processes": 1, "busy": None}


def test_a_machine_slowdown_between_runs_is_inconclusive_unpaired_and_same_paired():
    rng = np.random.default_rng(1)
    # no real change: the machine ran 30 % slower while the candidate's run was timed (its speed probe saw it)
    unpaired = verdict_for(_row(1.3, 4.6, rng), _row(1.0, 3.5, rng), 0.05)
    assert unpaired.word == "inconclusive"
    # re-timed in turns, the machine still moving (a ramp from 1.0 to 1.3, then a step back): pairs cancel it
    speed = lambda t: 1.0 + 0.3 * min(t, 50) / 50 - (0.2 if t >= 60 else 0.0)  # noqa: E731
    paired = decide_paired(_retime({"baseline": 1.0, "candidate": 1.0}, speed), 0.05)
    assert paired.word == "same", paired.reason
    low, high = paired.interval
    assert 0.95 <= low <= 1 <= high <= 1.05 and len(paired.pairs) == 8


def test_a_ten_percent_effect_under_twenty_percent_run_to_run_noise_is_slower_paired():
    rng = np.random.default_rng(2)
    shifts = np.exp(rng.normal(0, 0.2, 160))  # the machine's speed moves 20 % from one pair of rounds to the next
    cost = {"baseline": 1.0, "candidate": 1.1}
    pairs = _retime(cost, lambda t: shifts[t // 2], pairs=16, within=0.015, seed=3)
    first = decide_paired(pairs[:8], 0.05)  # the first look: a change, not yet at 99 % (every pair on one side)
    assert first.word == "inconclusive" and open_verdict(first) and "not yet at 99% confidence" in first.reason
    v = decide_paired(pairs, 0.05)          # the second look settles it
    assert v.word == "slower", v.reason
    assert 1.05 < v.ratio < 1.15 and v.interval[0] > 1.0
    assert "Wilcoxon signed-rank p" in v.reason and v.line.startswith("slower: ")
    faster = decide_paired(_retime({"baseline": 1.1, "candidate": 1.0}, lambda t: shifts[t // 2], pairs=16,
                                   within=0.015), 0.05)
    assert faster.word == "faster", faster.reason


def test_slow_stretches_of_the_machine_fall_on_both_sides_when_rounds_take_turns():
    """As a shared 2-core VM does: stretches of 2-6 rounds at 1.3-2.2x, at random. Rounds in turns see them alike
    (same); one side's process timed whole and then the other's (the order of separate processes) does not."""
    rng = np.random.default_rng(5)
    slow = np.ones(80)
    t = 0
    while t < 80:
        t += int(rng.integers(3, 12))
        n = int(rng.integers(2, 7))
        slow[t:t + n] = rng.uniform(1.3, 2.2)
        t += n
    cost = {"baseline": 1.0, "candidate": 1.0}
    turns = decide_paired(_retime(cost, lambda t: slow[t], within=0.005, seed=6, slowed=False), 0.05)
    assert turns.word == "same", turns.reason
    whole = lambda k: ["baseline"] * 5 + ["candidate"] * 5 if k % 2 else ["candidate"] * 5 + ["baseline"] * 5  # noqa: E731
    apart = decide_paired(_retime(cost, lambda t: slow[t], within=0.005, seed=6, order=whole, slowed=False), 0.05)
    assert apart.word == "inconclusive" and apart.interval[0] < 0.95 and apart.interval[1] > 1.05, apart.reason
    more = decide_paired(_retime({"baseline": 1.0, "candidate": 1.1}, lambda t: slow[t], within=0.005, seed=6,
                                 slowed=False), 0.05)
    assert more.word == "slower" and 1.08 < more.ratio < 1.12, more.reason


def test_identical_sides_are_same_at_ratio_one_and_a_planted_slowdown_is_slower():
    """What the bootstrap comparison of two sample sets checked, on the paired verdict that replaced it."""
    same = decide_paired(_retime({"baseline": 1.0, "candidate": 1.0}, lambda i: 1.0, within=0.0), 0.05)
    assert same.word == "same" and same.ratio == 1.0 and same.interval == (1.0, 1.0), same.reason
    slow = decide_paired(_retime({"baseline": 1.0, "candidate": 1.3}, lambda i: 1.0, within=0.01), 0.05)
    assert slow.word == "slower" and slow.ratio == pytest.approx(1.3, rel=0.02) and slow.interval[0] > 1.2


def test_pairs_that_disagree_are_inconclusive_and_say_why():
    v = decide_paired(_retime({"baseline": 1.0, "candidate": 1.0}, lambda i: 1.0, within=0.15, seed=4), 0.05)
    assert v.word == "inconclusive" and "the pairs disagree" in v.reason
    assert v.interval[0] < 1 < v.interval[1]


def test_a_small_change_that_reaches_past_the_effect_is_inconclusive():
    pairs = [Pair(1.0, r, "baseline") for r in (1.02, 1.03, 1.04, 1.05, 1.06, 1.07, 1.08, 1.03)]
    v = decide_paired(pairs, 0.05)
    assert v.word == "inconclusive" and v.reason.startswith("a change, but not one beyond the effect 5%")
    assert decide_paired(pairs, 0.10).word == "same"


def test_a_busy_machine_during_the_re_timing_is_inconclusive_never_a_verdict():
    pairs = [Pair(1.0, 2.0, "candidate", busy="other processes used 1.90 of 2 CPUs")] * 8
    v = decide_paired(pairs, 0.05)
    assert v.word == "inconclusive" and v.interval is None
    assert "machine busy during the re-timing: 8 of 8 pairs ran beside other load (other processes used 1.90" in v.reason
    quiet = [Pair(1.0, 1.001 + 0.001 * i, "baseline") for i in range(MIN_PAIRS)]
    some = decide_paired(quiet + pairs[:2], 0.05)  # two of eight left out: decided on the six quiet ones
    assert some.word == "same" and "2 left out: busy machine" in some.reason and len(some.pairs) == 8
    assert decide_paired(quiet[:MIN_PAIRS - 1], 0.05).word == "inconclusive"


def test_abba_blocks_cancel_a_drift_that_one_fixed_order_calls_a_change():
    drift = lambda t: 1.06 ** (t % 10)  # noqa: E731  the machine slows 6 % with every round of a pair, no real change
    cost = {"baseline": 1.0, "candidate": 1.0}
    assert decide_paired(_retime(cost, drift, within=0.002, slowed=False), 0.05).word == "same"
    fixed = lambda k: ["baseline", "candidate"] * 5  # noqa: E731  always the baseline's round first
    assert decide_paired(_retime(cost, drift, within=0.002, order=fixed, slowed=False), 0.05).word == "slower"


def test_schedule_is_abba_blocks_in_random_order():
    seen = set()
    for seed in range(20):
        order = schedule(5, np.random.default_rng(seed))
        assert len(order) == 10 and order.count("baseline") == order.count("candidate") == 5
        for b in range(0, 8, 4):
            block = order[b:b + 4]
            assert block[0] == block[3] != block[1] == block[2]
            seen.add(block[0])
    assert seen == {"baseline", "candidate"}


def test_rank_interval_is_the_exact_signed_rank_interval():
    est, low, high, reached = rank_interval(np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]))
    assert (low, high) == pytest.approx((0.1, 0.6)) and est == pytest.approx(0.35) and reached == pytest.approx(1 - 2 / 64)
    _, _, _, reached8 = rank_interval(np.linspace(0, 1, 8))
    assert reached8 == pytest.approx(1 - 2 * 5 / 256)  # P(T <= 3) = 5/256 for n = 8
    assert rank_interval(np.array([0.1, 0.2, 0.3, 0.4, 0.5])) is None  # five values cannot reach 95 %


@pytest.mark.parametrize("n", [6, 8, 13, 16, 24, 32])
@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
def test_rank_interval_is_the_set_of_shifts_scipys_exact_signed_rank_test_does_not_reject(n, confidence):
    """Checked against scipy's exact Wilcoxon signed-rank test, by inversion: a shift just inside the interval is
    not rejected at 1 - confidence, one just outside is, with p-value 1 - reached."""
    from scipy.stats import wilcoxon

    x = np.random.default_rng(n).normal(0.02, 0.05, n)
    got = rank_interval(x, confidence)
    if got is None:  # too few values for the confidence: scipy's smallest p-value agrees
        assert 2 / 2**n > 1 - confidence
        return
    est, low, high, reached = got
    assert reached >= confidence and low < est < high
    walsh = np.sort([(x[i] + x[j]) / 2 for i in range(n) for j in range(i, n)])
    gap = np.min(np.diff(walsh)) / 4
    def p(shift: float) -> float:
        return float(wilcoxon(x - shift, method="exact").pvalue)
    for end, inward in ((low, +1), (high, -1)):
        assert p(end + inward * gap) > 1 - confidence  # inside: not rejected
        outside = p(end - inward * gap)
        assert outside <= 1 - confidence and outside == pytest.approx(1 - reached)  # outside: rejected, at 1 - reached
    assert est == pytest.approx(np.median(walsh))


def test_the_fewest_pairs_of_a_verdict_follow_from_its_confidence():
    x = np.linspace(0.01, 0.02, 16)  # every pair on one side: the smallest p-value n pairs can give
    assert (MIN_PAIRS, CHANGE_PAIRS) == (6, 8)
    for n, confidence in ((MIN_PAIRS, CONFIDENCE), (CHANGE_PAIRS, CHANGE_CONFIDENCE)):
        assert rank_interval(x[:n], confidence) is not None and rank_interval(x[:n - 1], confidence) is None


def _processes(ratio: float, spread: float, seed: int):
    """``more(n, done)`` of :func:`settle` on simulated pairs whose every process lands at its own level (a
    ``spread`` relative term per process, as where its memory landed moves a process's latency as a whole; rounds
    add 1 %); the candidate costs ``ratio`` times the baseline. Also the pairs' count so far."""
    rng = np.random.default_rng(seed)
    ran = [0]

    def more(n: int, done: int):
        assert done == ran[0]
        ran[0] += n
        out = []
        for _ in range(n):
            b, c = (1 + rng.normal(0, spread, 2)) * (1.0, ratio)
            out.append(Pair(level(list(b * (1 + rng.normal(0, 0.01, 5)))),
                            level(list(c * (1 + rng.normal(0, 0.01, 5)))), "baseline"))
        return out
    return more, ran


def test_a_re_timing_takes_more_pairs_only_while_its_verdict_is_open():
    assert batches(24) == [8, 8, 8] and batches(6) == [6] and batches(20) == [8, 8, 4]
    # same code, processes spread 4 %: eight pairs often leave the interval wider than +-5 %; more settle "same"
    counts = []
    for seed in range(5):
        more, ran = _processes(1.0, 0.04, seed)
        first = decide_paired(more(8, 0), 0.05)
        more, ran = _processes(1.0, 0.04, seed)
        said = []
        v = settle(more, 24, 0.05, said.append)
        assert v.word == "same", (seed, v.reason)
        assert ran[0] == len(v.pairs) and (ran[0] == 8) == (not open_verdict(first))
        assert len(said) == ran[0] // 8 - 1 and all("more pairs" in x for x in said)
        counts.append(ran[0])
    assert min(counts) == 8 and max(counts) > 8   # some settle at the first look, some need the second
    # a 10 % change under the same spread is slower, and a clear one stops at the first look
    for seed in range(5):
        more, ran = _processes(1.10, 0.04, seed)
        assert settle(more, 24, 0.05).word == "slower", seed
    more, ran = _processes(2.0, 0.04, 0)
    assert settle(more, 24, 0.05).word == "slower" and ran[0] == 8
    # a busy machine is never given more pairs: inconclusive at once, with the reason
    busy = [Pair(1.0, 1.5, "baseline", busy="other processes used 1.9 of 2 CPUs")] * 8
    v = settle(lambda n, done: busy[:n], 24, 0.05)
    assert v.word == "inconclusive" and v.interval is None and len(v.pairs) == 8 and "machine busy" in v.reason
    assert settle(lambda n, done: "the candidate's re-timing process failed", 24) == \
        "the candidate's re-timing process failed"


def test_eight_pairs_just_past_the_effect_with_one_pair_on_the_other_side_are_not_yet_a_change():
    """Same code on a 2-core VM once gave 8 pairs whose 96 % interval was -10.0 %..-0.7 % and whose estimate was
    -5.2 %: a change verdict at 95 % a look, over up to four looks. At 99 % a look, 8 pairs must all lie on one side."""
    pairs = [Pair(1.0, r, "baseline") for r in (0.89, 0.91, 0.93, 0.94, 0.95, 0.96, 0.97, 1.01)]
    v = decide_paired(pairs, 0.05)
    assert v.ratio < 0.95 and v.interval[1] < 1.0      # the reported 95 % interval excludes no change...
    assert v.word == "inconclusive" and open_verdict(v), v.reason  # ...but the verdict stays open for more pairs
    assert decide_paired([Pair(1.0, r * 0.98, "baseline") for r in (0.89, 0.91, 0.93, 0.94, 0.95, 0.96, 0.97, 1.01)],
                         0.05).word == "faster"     # every pair on one side, beyond the effect: faster
