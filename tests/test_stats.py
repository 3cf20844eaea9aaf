"""Statistics and the timing loop, checked with an injected fake clock (no real timing)."""

from types import SimpleNamespace

import numpy as np
import pytest

from optbench.measure import Measurement, measure_session


class FakeClock:
    """Advances by the scripted duration of each call the fake session makes."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeSession:
    def __init__(self, clock: FakeClock, durations_s: list[float]) -> None:
        self.clock, self.durations, self.calls, self.syncs = clock, durations_s, 0, 0

    def prepare(self, feeds):
        return feeds

    def run(self, bound):
        self.clock.now += self.durations[self.calls % len(self.durations)]
        self.calls += 1

    def synchronize(self):
        self.syncs += 1


def settings(**kw):
    base = dict(warmup_s=0.0, min_iters=10, min_duration_s=0.0, max_iters=1000, cv_warn=0.1)
    return SimpleNamespace(**{**base, **kw})


def test_samples_are_per_call_durations_in_ms():
    clock = FakeClock()
    m, _ = measure_session(FakeSession(clock, [0.002]), {}, 4, settings(min_iters=5), clock=clock)
    assert len(m.samples_ms) == 5
    assert m.samples_ms == pytest.approx((2.0,) * 5)
    assert m.throughput == pytest.approx(4 / 0.002)


def test_min_duration_extends_past_min_iters():
    clock = FakeClock()
    m, _ = measure_session(FakeSession(clock, [0.01]), {}, 1, settings(min_iters=3, min_duration_s=0.5), clock=clock)
    assert len(m.samples_ms) == 50


def test_max_iters_caps_samples_and_warmup_runs_once_at_least():
    clock = FakeClock()
    s = FakeSession(clock, [0.001])
    m, _ = measure_session(s, {}, 1, settings(min_iters=10, min_duration_s=100.0, max_iters=20), clock=clock)
    assert len(m.samples_ms) == 20
    assert s.calls == 21  # one warm-up call
    assert s.syncs == s.calls  # every call is followed by synchronize()


def test_warmup_time_is_not_sampled():
    clock = FakeClock()
    s = FakeSession(clock, [0.1])
    _ = measure_session(s, {}, 1, settings(warmup_s=0.35, min_iters=2), clock=clock)
    assert s.calls == 4 + 2


def test_percentiles_mean_std_cv():
    samples = tuple(float(x) for x in range(1, 101))
    m = Measurement(samples, batch_size=1)
    s = m.summary()
    assert s["latency_ms_p50"] == pytest.approx(np.percentile(samples, 50))
    assert s["latency_ms_p99"] == pytest.approx(np.percentile(samples, 99))
    assert s["latency_ms_mean"] == pytest.approx(50.5)
    assert s["latency_ms_std"] == pytest.approx(np.std(samples, ddof=1))
    assert s["latency_ms_min"] == 1.0 and s["latency_ms_max"] == 100.0
    assert m.cv == pytest.approx(np.std(samples, ddof=1) / 50.5)


def test_noisy_measurement_warns_and_steady_does_not():
    clock = FakeClock()
    noisy, _ = measure_session(FakeSession(clock, [0.001, 0.003]), {}, 1, settings(), clock=clock)
    assert noisy.warnings and noisy.warnings[0]["code"] == "noisy" and "CV" in noisy.warnings[0]["message"]
    steady, _ = measure_session(FakeSession(clock, [0.001, 0.00101]), {}, 1, settings(), clock=clock)
    assert steady.warnings == []


def test_empty_measurement_is_an_error():
    with pytest.raises(ValueError):
        Measurement((), 1).percentile(50)


class FakeEvent:
    def __init__(self, clock, log):
        self.clock, self.log = clock, log

    def record(self):
        self.t = self.clock.now

    def elapsed_time(self, end):
        return (end.t - self.t) * 1000.0 * 0.5  # the "device" part is half of each call


class FakeDeviceSession(FakeSession):
    def device_events(self):
        return FakeEvent(self.clock, []), FakeEvent(self.clock, [])


def test_device_events_give_device_samples_beside_host_samples():
    clock = FakeClock()
    host, device = measure_session(FakeDeviceSession(clock, [0.004]), {}, 1, settings(min_iters=6), clock=clock)
    assert len(device.samples_ms) == len(host.samples_ms) == 6
    assert device.summary("gpu_ms")["gpu_ms_p50"] == pytest.approx(2.0)
    assert host.percentile(50) == pytest.approx(4.0)
    _, none = measure_session(FakeSession(clock, [0.004]), {}, 1, settings(min_iters=6), clock=clock)
    assert none is None


def test_rounds_are_shared_among_processes():
    from optbench.measure.timing import round_shares

    assert round_shares(9, 3) == [3, 3, 3]
    assert round_shares(5, 2) == [3, 2]
    assert round_shares(2, 5) == [1, 1]  # never more processes than rounds
    assert round_shares(5, 1) == [5]


def test_rows_of_several_processes_merge_into_one():
    """Samples and rounds pooled, each round keeping its process; statistics and warnings recomputed; a busy
    process makes the row busy."""
    from types import SimpleNamespace

    from optbench.measure.timing import merge_processes

    def part(base, busy=None):
        samples = [base] * 10 + [base * 1.01] * 10
        return {"status": "ok", "samples_ms": samples, "busy": busy, "warnings": ["unstable: stale"],
                "rounds": [{"median_ms": base, "iterations": 10, "probe_us": 4.0},
                           {"median_ms": base * 1.01, "iterations": 10, "probe_us": 4.1}],
                "contention": {"other_cpus": 0.0}, "task_accuracy": 0.9}

    settings = SimpleNamespace(cv_warn=0.1, spread_warn=0.05)
    row = merge_processes(part(1.0), [part(1.5), part(1.0, busy="other processes used 1.9 of 2 CPUs")], 4, settings)
    assert row["timing_processes"] == 3 and row["iterations"] == 60 and len(row["latency_ms_rounds"]) == 6
    assert [r["process"] for r in row["rounds"]] == [0, 0, 1, 1, 2, 2]
    assert row["latency_ms_rounds"][2] == 1.5 and row["task_accuracy"] == 0.9
    messages = [w["message"] for w in row["warnings"]]
    assert row["busy"] and any(w["code"] == "busy" and w["message"].startswith("machine busy") for w in row["warnings"])
    assert "unstable: stale" not in messages and any(m.startswith("unstable: round medians") for m in messages)
    assert row["throughput_items_s"] == 4 * 1000.0 / row["latency_ms_p50"]
