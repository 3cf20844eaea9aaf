"""The search strategy on a synthetic cost/accuracy model (no measurement): it finds the known optimum, gives back
what a misleading ranking moved, replays the same sequence from the same outcomes, and stops at its trial limit;
node groups as patterns."""

import fnmatch

import pytest

from optbench.tune.space import escape, patterns
from optbench.tune.strategy import Calib, Candidate, Outcome, Rank, Space, Step, calibrations, search

GROUPS = [f"g{i}" for i in range(12)]
DAMAGE = {"g3": 0.5, "g7": 0.3, "g1": 0.2}   # what each group costs the metric when it stays int8
HARMLESS = 0.001                              # every other group
LIMIT = 0.1                                   # the budget: total damage at most this
FP32_MS, INT8_MS = 10.0, 5.0
COST = {"fp32": 0.4, "fp16": 0.8}              # a group moved off int8 costs this much latency (fp16 emulated here)
FP16_SLOWER = [True]                           # the fp16 anchor's verdict against fp32
FP16_DAMAGE: dict[str, float] = {}              # what each group costs the metric in fp16 (none: fp16 passes)


def model(c: Candidate) -> Outcome:
    """The synthetic truth: int8 latency grows with each fallback, accuracy with what stays int8."""
    if c.kind == "fp32":
        return Outcome(True, True, 1.0, FP32_MS, None)
    if c.kind == "fp16":  # slower than fp32 by default: its level is dropped
        kept = {g for g, _ in c.fallbacks}
        score = (LIMIT - sum(v for g, v in FP16_DAMAGE.items() if g not in kept)) / LIMIT
        return Outcome(True, score >= 0, score, 12.0 if FP16_SLOWER[0] else 4.0 + 0.4 * len(kept), not FP16_SLOWER[0])
    moved = {g for g, _ in c.fallbacks}
    damage = sum(DAMAGE.get(g, HARMLESS) for g in GROUPS if g not in moved)
    if c.calib.method == "percentile":
        damage *= 0.9
    score = (LIMIT - damage) / LIMIT
    return Outcome(True, score >= 0, score, INT8_MS + sum(COST[p] for _, p in c.fallbacks), True)


def drive(space: Space, ranking: list[str]) -> list[tuple[str, Candidate]]:
    gen, seen = search(space), []
    msg = next(gen, None)
    while msg is not None:
        if isinstance(msg, Rank):
            reply = list(ranking)
        else:
            assert isinstance(msg, Step)
            seen += [(msg.phase, c) for c in msg.candidates]
            reply = {c: model(c) for c in msg.candidates}
        try:
            msg = gen.send(reply)
        except StopIteration:
            break
    return seen


def _space(trials: int = 40) -> Space:
    base = Calib("minmax", True, False)
    return Space(calibrations(["minmax", "percentile"], [True], [False, True], base), ["fp16", "fp32"], trials)


def _fastest_passing(seen):
    passing = [(model(c).p50, c) for _, c in seen if model(c).passed]
    return min(passing, key=lambda x: x[0])[1]


def test_finds_the_known_optimum_with_an_exact_ranking():
    ranking = ["g3", "g7", "g1"] + [g for g in GROUPS if g not in DAMAGE]
    seen = drive(_space(), ranking)
    best = _fastest_passing(seen)
    # the optimum: exactly the three damaging groups in fp32 (fp16 runs slower than fp32 here, so it is skipped)
    assert best.kind == "int8" and sorted(g for g, _ in best.fallbacks) == ["g1", "g3", "g7"]
    assert {p for _, p in best.fallbacks} == {"fp32"}
    phases = [p for p, _ in seen]
    assert phases[:3] == ["anchor"] * 3 and "escalate" in phases and "bisect" in phases
    assert not any(c.kind == "int8" and any(p == "fp16" for _, p in c.fallbacks) for _, c in seen)


def test_an_undecided_fp16_level_is_tried_then_left_for_the_faster_fp32():
    FP16_SLOWER[0] = None  # the fp16 anchor's verdict was inconclusive: fp16 stays the first fallback
    try:
        ranking = ["g3", "g7", "g1"] + [g for g in GROUPS if g not in DAMAGE]
        seen = drive(_space(), ranking)
    finally:
        FP16_SLOWER[0] = True
    phases = [p for p, _ in seen]
    assert "level" in phases and phases.index("level") < phases.index("give-back")
    assert any(p == "fp16" for _, c in seen for _, p in c.fallbacks)
    best = _fastest_passing(seen)
    assert sorted(g for g, _ in best.fallbacks) == ["g1", "g3", "g7"] and {p for _, p in best.fallbacks} == {"fp32"}


def test_a_failing_fp16_graph_that_runs_fast_keeps_its_worst_groups_in_fp32():
    FP16_SLOWER[0] = False
    FP16_DAMAGE.update({"g5": 0.4})
    try:
        seen = drive(_space(), ["g5", "g3", "g7", "g1"] + [g for g in GROUPS if g not in DAMAGE | FP16_DAMAGE])
        fp16 = [c for _, c in seen if c.kind == "fp16" and c.fallbacks and model(c).passed]
        assert fp16 and min(fp16, key=lambda c: model(c).p50).fallbacks == (("g5", "fp32"),)
        assert _fastest_passing(seen).kind == "fp16"  # fp16 runs faster than int8 in this synthetic world
    finally:
        FP16_SLOWER[0] = True
        FP16_DAMAGE.clear()


def test_gives_back_what_a_misleading_ranking_moved():
    ranking = ["g3", "g5", "g7", "g9", "g1"] + [g for g in GROUPS if g not in DAMAGE | {"g5": 0, "g9": 0}]
    seen = drive(_space(), ranking)
    best = _fastest_passing(seen)
    assert sorted(g for g, _ in best.fallbacks) == ["g1", "g3", "g7"]
    assert "give-back" in [p for p, _ in seen]


def test_same_outcomes_same_sequence_and_the_trial_limit_holds():
    ranking = ["g3", "g7", "g1"] + [g for g in GROUPS if g not in DAMAGE]
    assert drive(_space(), ranking) == drive(_space(), ranking)
    short = drive(_space(trials=6), ranking)
    assert len(short) == 6 and short == drive(_space(), ranking)[:6]


def test_no_escalation_when_the_whole_int8_graph_passes():
    global DAMAGE
    saved, DAMAGE = DAMAGE, {}
    try:
        seen = drive(_space(), GROUPS)
    finally:
        DAMAGE = saved
    assert [p for p, _ in seen] == ["anchor"] * 3


def test_calibrations_are_one_change_from_the_base():
    base = Calib("minmax", True, False)
    got = calibrations(["minmax", "entropy", "percentile"], [True, False], [False, True], base)
    assert got[0] == base and len(got) == len(set(got)) == 5
    assert all(sum(a != b for a, b in zip((c.method, c.per_channel, c.symmetric), ("minmax", True, False))) <= 1
               for c in got)


@pytest.mark.parametrize("chosen, expected", [
    (["/m.22/a/Conv", "/m.22/a/Mul", "/m.22/Sigmoid"], ["/m.22/*"]),
    (["/m.22/a/Conv", "/m.22/a/Mul"], ["/m.22/a/*"]),
    (["/m.22/Sigmoid"], ["/m.22/Sigmoid"]),
    (["/m.1/Conv", "/m.22/Sigmoid"], ["/m.1/*", "/m.22/Sigmoid"]),
])
def test_groups_become_the_fewest_patterns_that_name_exactly_them(chosen, expected):
    every = ["/m.1/Conv", "/m.22/a/Conv", "/m.22/a/Mul", "/m.22/Sigmoid"]
    got = patterns(chosen, every)
    assert got == expected
    assert {n for n in every if any(fnmatch.fnmatchcase(n, p) for p in got)} == set(chosen)


def test_escaped_names_match_themselves_only():
    assert fnmatch.fnmatchcase("a[1]*", escape("a[1]*")) and not fnmatch.fnmatchcase("a1x", escape("a[1]*"))


def test_each_candidate_is_one_variant_per_search_backend():
    import yaml

    from optbench.plan import plan
    from optbench.specfile.load import validate
    from optbench.tune.space import base_int8, entry_key, point_of, settings_of, tune_spec, variant_ids

    spec = validate(yaml.safe_load("""
name: two
model: {source: onnx, path: model.onnx}
inputs: [{name: x, shape: [batch, 4], dtype: float32}]
data: {source: synthetic}
variants: {precision: [int8], batch_size: [1, 8], int8: [{samples: 16}]}
backends: [onnxruntime, {name: onnxruntime, label: ort1, threads: 1}, {name: onnxruntime, label: gpu, provider: cuda}]
budgets: {"*": {cosine_min: 0.9}}
search: {batch: 8, space: {backends: [onnxruntime, ort1]}, budgets: {int8: {cosine_min: 0.99}}}
"""), {}, "two.yaml")
    cands = [Candidate("fp32"), Candidate("int8", Calib("minmax", True, False), (("/a", "fp32"),))]
    every = ["/a/Conv", "/b/Conv"]
    entries = {c: (c.kind, settings_of(c, base_int8(spec), {"/a": ["/a/Conv"]}, every)) for c in cands}
    d = tune_spec(spec, point_of(spec), ["onnxruntime", "ort1"], list(entries.values()))
    assert d["variants"]["batch_size"] == [8] and [b.get("label") for b in d["backends"]] == [None, "ort1"]
    assert d["budgets"]["int8"] == {"cosine_min": 0.99} and d["measure"]["processes"] == 3
    assert d["variants"]["int8"][0]["exclude_nodes"] == ["/a/*"]
    got = variant_ids(plan(validate(d, {}, "two.yaml")), {entry_key(k, s): c for c, (k, s) in entries.items()})
    assert {c: sorted(vs) for c, vs in got.items()} == {c: ["onnxruntime", "ort1"] for c in cands}
