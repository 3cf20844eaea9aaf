"""Rounds and the latency gate, with an injected fake clock and synthetic rounds (no real timing)."""

from types import SimpleNamespace

import pytest

from optbench.measure import measure_rounds
from optbench.measure.contention import busy_reason
from optbench.measure.stats import Measurement
from optbench.measure.verdict import Rounds, decide, quiet, rounds_of, verdict_for
from tests.test_stats import FakeClock, FakeSession


def _settings(**kw):
    base = dict(warmup_s=0.0, min_iters=30, min_duration_s=0.0, max_iters=1000, cv_warn=0.1, rounds=3,
                round_pause_s=0.5, spread_warn=0.05)
    return SimpleNamespace(**{**base, **kw})


def test_rounds_share_the_iterations_and_each_has_its_warm_up_and_pause():
    clock, pauses = FakeClock(), []
    session = FakeSession(clock, [0.001])
    host, dev, timing = measure_rounds(session, {}, 1, _settings(), clock=clock, pause=pauses.append,
                                       probe=lambda: None, speed_probe=lambda: 4.0)
    assert [len(r) for r in host.rounds] == [10, 10, 10] and len(host.samples_ms) == 30
    assert pauses == [0.5, 0.5]
    assert session.calls == 30 + 3  # one warm-up call per round
    assert [r["probe_us"] for r in timing["rounds"]] == [4.0, 4.0, 4.0]
    assert dev is None and timing["busy"] is None


def test_a_slow_round_makes_the_row_unstable():
    clock = FakeClock()
    durations = [0.001] * 10 + [0.0013] * 10 + [0.001] * 10  # the middle round 30 % slower
    host, _, _ = measure_rounds(FakeSession(clock, durations), {}, 1, _settings(), clock=clock, pause=lambda s: None,
                                probe=lambda: None, speed_probe=lambda: 4.0)
    assert host.round_medians == pytest.approx([1.0, 1.3, 1.0])
    assert host.round_spread == pytest.approx(0.3)
    assert any(w["code"] == "unstable" and w["message"].startswith("unstable: round medians spread 30.0%")
               for w in host.warnings)
    summary = host.summary()
    assert summary["latency_ms_rounds"] == pytest.approx([1.0, 1.3, 1.0])
    assert summary["latency_outliers"] == 0 and summary["latency_ms_min"] == pytest.approx(1.0)


def test_robust_statistics():
    m = Measurement(tuple([1.0] * 8 + [2.0, 50.0]), 1)
    r = m.robust
    assert r["median"] == 1.0 and r["iqr"] == 0.0 and r["mad"] == 0.0 and r["min"] == 1.0
    assert r["outliers"] == 2 and r["cv_trimmed"] == 0.0


def test_same_slower_faster():
    base = Rounds([1.00, 1.01, 1.30, 1.00, 1.02, 1.60])  # slowed rounds only add time
    assert decide(Rounds([1.01, 1.00, 1.45, 1.02, 1.50, 1.01]), base).word == "same"
    slower = decide(Rounds([1.30, 1.31, 1.70, 1.30, 1.29, 1.60]), base)
    assert slower.word == "slower" and slower.ratio == pytest.approx(1.3, abs=0.01)
    assert decide(Rounds([0.80, 0.81, 0.80, 1.2, 0.8, 0.9]), base).word == "faster"


def test_noise_beyond_the_effect_is_inconclusive_with_the_numbers():
    noisy = Rounds([1.00, 1.12, 1.25])
    v = decide(noisy, Rounds([1.0, 1.12, 1.3]), effect=0.05)
    assert v.word == "inconclusive" and v.reason.startswith("noise 11.3% > effect 5%")
    assert decide(Rounds([1.03, 1.05]), Rounds([1.0, 1.0]), effect=0.05).word == "same"
    v = decide(Rounds([1.0, 1.4]), Rounds([0.95, 1.25]), effect=0.05)  # +9.1 % against a noise of 30 %
    assert v.word == "inconclusive" and v.reason.startswith("noise 30.3% >= difference 9.1%")


def test_busy_or_single_round_is_inconclusive():
    base = Rounds([1.0, 1.0, 1.0])
    busy = decide(Rounds([2.0, 2.0, 2.0], busy="other processes used 1.90 of 2 CPUs"), base)
    assert busy.word == "inconclusive" and "machine busy while the candidate was timed" in busy.reason
    assert decide(Rounds([1.0]), base).word == "inconclusive"


def test_quiet_rounds_are_the_fastest_third():
    assert quiet([5, 1, 4, 2, 3, 6]) == [1, 2]
    assert quiet([3, 1, 2, 9, 8, 7, 6, 5, 4]) == [1, 2, 3]
    assert quiet([2, 1]) == [1, 2]


def test_rows_before_rounds_existed_are_cut_into_thirds():
    old = {"samples_ms": [1.0] * 30, "status": "ok"}
    r = rounds_of(old)
    assert r.medians == [1.0, 1.0, 1.0] and "made before rounds existed" in r.note
    v = verdict_for({"samples_ms": [1.7] * 30}, old, 0.05)  # beyond what one process a side can hide
    assert v.word == "slower" and "candidate: made before rounds existed" in v.reason
    v = verdict_for({"samples_ms": [1.3] * 30}, old, 0.05)
    assert v.word == "inconclusive" and "Set measure.processes: 3" in v.reason


def test_busy_reason_names_the_numbers():
    assert busy_reason({"other_cpus": 1.8, "cpus": 2, "steal": 0.0}) == "other processes used 1.80 of 2 CPUs"
    assert busy_reason({"other_cpus": 0.02, "cpus": 2, "steal": 0.08}) == "steal 8%"
    assert busy_reason({"other_cpus": 0.1, "cpus": 2, "steal": 0.0, "throttled": 0.0}) is None


def test_a_difference_the_machine_speed_explains_is_inconclusive():
    base = Rounds([1.0, 1.0, 1.01], probes=[4.0, 4.0, 4.1])
    slowed = Rounds([1.4, 1.41, 1.42], probes=[6.0, 6.1, 6.2])  # every round in a slow period of the machine
    v = decide(slowed, base)
    assert v.word == "inconclusive" and "machine itself was slower while the candidate's quietest rounds" in v.reason
    real = Rounds([1.4, 1.41, 1.42], probes=[4.0, 4.1, 4.0])  # same machine speed: a real slowdown
    assert decide(real, base).word == "slower"


def test_a_slowdown_the_machine_speed_cannot_explain_is_still_slower():
    """A 2x-work candidate whose own rounds' probes ran +30 % (its lingering threads beside the probe): a machine
    30 % slower cannot make a variant twice as slow."""
    base = Rounds([1.0, 1.0, 1.01], probes=[4.0, 4.0, 4.1])
    twice = Rounds([2.0, 2.01, 2.02], probes=[5.2, 5.2, 5.3])
    v = decide(twice, base)
    assert v.word == "slower", v.reason
    close = Rounds([1.5, 1.51, 1.52], probes=[5.2, 5.2, 5.3])  # +50 % beside a +30 % machine: could be the machine
    assert decide(close, base).word == "inconclusive"


class _Turns:
    def __init__(self, log):
        self.log = log

    def start(self):
        self.log.append("start")

    def before(self):
        self.log.append("before")

    def after(self):
        self.log.append("after")

    def end(self):
        self.log.append("end")


def test_rounds_that_take_turns_wait_before_each_round_and_judge_the_load_over_their_own_rounds():
    clock, log = FakeClock(), []
    session = FakeSession(clock, [0.001])
    _, _, timing = measure_rounds(session, {}, 1, _settings(), clock=clock, pause=lambda s: log.append("pause"),
                                  probe=lambda: None, speed_probe=lambda: 4.0, turns=_Turns(log))
    assert log == ["start", "before", "after", "pause", "before", "after", "pause", "before", "after", "end"]
    assert timing["busy"] is None


def test_pooled_windows_weigh_each_reading_by_its_window():
    from optbench.measure.contention import pooled

    # the other process of a pair ran between these windows: only the windows themselves count
    got = pooled([{"window_s": 0.4, "cpus": 2, "other_cpus": 0.1, "steal": 0.0},
                  {"window_s": 0.2, "cpus": 2, "other_cpus": 1.9, "steal": 0.03, "throttled": 0.5}])
    assert got["window_s"] == pytest.approx(0.6) and got["windows"] == 2
    assert got["other_cpus"] == pytest.approx((0.04 + 0.38) / 0.6, abs=1e-3)
    assert got["steal"] == pytest.approx(0.01) and got["throttled"] == pytest.approx(0.5)
    assert busy_reason(got) == "other processes used 0.70 of 2 CPUs; cgroup throttled 50% of the window"
    assert pooled([]) == {}
