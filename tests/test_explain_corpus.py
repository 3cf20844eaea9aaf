"""``optbench explain`` on the int8 rows of two conformance-corpus models of different families: the captcha CRNN
(Conv+BatchNorm+Relu blocks, the BatchNorms and Relus folded into the Convs, then two unrolled LSTMs) and nudenet's
YOLOv8n (Conv+SiLU blocks, only the Convs quantized, a float detection head). Each key's run is the one
tests/test_corpus.py cross-checks (run as its spec says, judged but not timed, once per test session:
SHARED_RUNS in tests/conftest.py); its row here is the first static int8 variant at batch 1 and one shape.

Explain must reproduce the row (its graph-output rel. L2 on the row's eval items within 10 % of the row's, for every
view), and compare no tensor across a fold: each variant tensor it reads is nearer the fp32 tensor it is compared
with than the fp32 tensor on the other side of an activation next to it (a Relu the quantizer folded, a Sigmoid,
a SiLU), checked here by running both graphs on items of the run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from test_corpus import CORPUS, _missing, _rows

from tests.conftest import SHARED_RUNS

# on the worker of the corpus tests of the same keys, which share their runs
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group(SHARED_RUNS["corpus/captcha_crnn"][2])]

# the key and its int8 row's batch and shape (the row of the first static int8 setting of its spec)
CASES = {"captcha_crnn": {"batch_size": [1]},
         "nudenet_320n": {"batch_size": [1], "shapes": [{"height": 320, "width": 320}]}}
# single-input activations: a tensor on one side of one is never compared with the other side's
ACTIVATIONS = {"Relu", "Clip", "Sigmoid", "Tanh", "LeakyRelu", "HardSigmoid", "HardSwish"}


@pytest.fixture(scope="module", params=sorted(CASES))
def corpus_row(request, shared_run):
    """The key's int8 row (of the session's judge-only run of the key, shared by the tests of the key and the
    corpus's) and its explanation."""
    from optbench.explain.variant import explain_variant

    key = request.param
    if why := _missing(key):
        pytest.skip(why)
    run = shared_run(f"corpus/{key}")
    spec = yaml.safe_load((CORPUS / key / "spec.yaml").read_text())
    static = next(i for i in spec["variants"]["int8"] if i.get("mode") == "static")
    shape = CASES[key].get("shapes", [{}])[0]
    (row,) = [r for r in _rows(run).values()
              if r["precision"] == "int8" and all((r.get("int8") or {}).get(k) == v for k, v in static.items())
              and r["batch_size"] in CASES[key]["batch_size"] and (r.get("shape") or {}) == shape]
    assert row["status"] == "ok" and row["precision"] == "int8", row.get("error")
    return key, run, row, explain_variant(run, row["variant_id"], items=4)


def test_explain_reproduces_the_corpus_row(corpus_row):
    key, _, row, loc = corpus_row
    r = loc.reproduction
    views = {k for k, m in row["outputs"].items() if m.get("drift_rel_l2") is not None}
    assert r is not None and r.reproduced, r.sentence() if r else "not checked"
    assert set(r.outputs) == views and r.items == {"captcha_crnn": 30, "nudenet_320n": 16}[key]  # the spec's eval
    for view, (explained, recorded) in r.outputs.items():
        assert recorded == row["outputs"][view]["drift_rel_l2"] > 0.01
        assert abs(explained - recorded) <= 0.1 * recorded, (key, view, explained, recorded)
    assert loc.nodes and loc.ranked(1)[0].introduced > 0


def test_no_tensor_is_compared_across_a_fold(corpus_row):
    """No point explain reads (the variant's tensor as ORT's optimised graph holds it, dequantized) stands on the other
    side of an activation than the fp32 tensor it is compared with (see compared_across)."""
    key, run, row, loc = corpus_row
    checked, crossed = compared_across(run, row, {d.compared for d in loc.nodes})
    assert checked >= 10, f"{key}: too few points next to an activation to check"
    assert not crossed, f"{key}: variant tensors nearer the other side of an activation: {crossed[:5]}"


def compared_across(run: Path, row: dict, compared: set[str]) -> tuple[int, list[tuple]]:
    """How many of the variant's points next to an activation were checked, and those compared across it: next to a
    Relu or Clip, a variant tensor inside the activation's range (its own image) compared with an fp32 tensor
    outside it, or the reverse; next to any, a variant tensor nearer the fp32 tensor across the activation than the
    one it is compared with. (variant tensor, compared fp32 tensor, activation, what was seen)"""
    import onnx
    import onnxruntime as ort

    from optbench.explain import kernels as k
    from optbench.explain.graph import exposed, plan
    from optbench.explain.variant import _batches, _reference_graph

    reference, variant = _reference_graph(run, row), Path(row["artifact"])
    quantized = [pt.tensor for pt in plan(reference, variant).points if pt.scale is not None]
    ran = k.optimised(exposed(variant, quantized), "all")
    p = plan(reference, variant, k.holding(ran))
    assert compared <= {pt.reference for pt in p.points}
    ref = onnx.load(str(reference)).graph
    producer = {o: n for n in ref.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in ref.node:
        for x in n.input:
            consumers.setdefault(x, []).append(n)
    values = {i.name: onnx.numpy_helper.to_array(i) for i in ref.initializer}

    def bounds(n) -> tuple[float, float] | None:
        """A Relu's or Clip's range (None: a Clip whose bounds are not constants)."""
        if n.op_type == "Relu":
            return 0.0, np.inf
        ins = list(n.input) + ["", ""]
        if any(x and x not in values for x in ins[1:3]):
            return None
        return (float(values[ins[1]]) if ins[1] else -np.inf), (float(values[ins[2]]) if ins[2] else np.inf)

    def next_to(t: str) -> list:
        """The activations whose input or output ``t`` is (x*sigmoid(x) counts as one, written by its Mul)."""
        out = [n for n in [producer.get(t)] + consumers.get(t, []) if n is not None and n.op_type in ACTIVATIONS]
        for n in [producer.get(t)] + consumers.get(t, []):
            if n is not None and n.op_type == "Mul" and any(
                    (s := producer.get(b)) is not None and s.op_type == "Sigmoid" and s.input[0] == a
                    for a, b in (n.input, n.input[::-1])):
                out.append(n)
        return out

    checks = {pt.at: (pt, acts) for pt in p.points if (acts := next_to(pt.reference))}
    ref_names = sorted({pt.reference for pt, _ in checks.values()}
                       | {x for _, acts in checks.values() for a in acts for x in [*a.input[:1], a.output[0]]})
    so = ort.SessionOptions()
    so.log_severity_level = 3
    ref_sess = ort.InferenceSession(exposed(reference, ref_names), so, providers=["CPUExecutionProvider"])
    var_sess = k.session(k.with_outputs(ran, sorted(checks)))
    sums: dict[tuple, float] = {}

    def add(key: tuple, a: np.ndarray, b: np.ndarray) -> None:  # ||a - b||^2 and ||b||^2
        sums[(*key, "d")] = sums.get((*key, "d"), 0.0) + float(np.sum((a - b) ** 2))
        sums[(*key, "n")] = sums.get((*key, "n"), 0.0) + float(np.sum(b.astype(np.float64) ** 2))

    for feeds, _ in _batches(run, row, 4, 0):
        r = dict(zip(ref_names, ref_sess.run(ref_names, feeds)))
        v = dict(zip(sorted(checks), var_sess.run(sorted(checks), feeds)))
        for at, (pt, acts) in checks.items():
            value, fp32 = p.dequantized(pt, v[at]), r[pt.reference]
            for a in acts:
                if a.op_type in ("Relu", "Clip") and (b := bounds(a)) is not None:
                    # a projection: the tensor after it is its own image, the tensor before it (mostly) not
                    add((at, a.name, "variant"), np.clip(value, *b), value)
                    add((at, a.name, "fp32"), np.clip(fp32, *b), fp32)
                for t in {a.input[0], a.output[0]} - {pt.reference}:
                    if r[t].shape == value.shape:
                        add((at, a.name, "across"), value, r[t])
            add((at, "", "compared"), value, fp32)
    rel = lambda *key: np.sqrt(sums[(*key, "d")]) / max(np.sqrt(sums[(*key, "n")]), 1e-12)  # noqa: E731
    crossed = []
    for at, (pt, acts) in checks.items():
        for a in acts:
            if (at, a.name, "variant", "d") in sums:
                inside_v, inside_r = rel(at, a.name, "variant"), rel(at, a.name, "fp32")
                if (inside_v < 0.01) != (inside_r < 0.01) and max(inside_v, inside_r) > 0.1:
                    crossed.append((at, pt.reference, a.name, f"{inside_v:.3g} of the variant's outside its range, "
                                                              f"{inside_r:.3g} of the fp32 tensor's"))
            # a tensor far from both sides (a Sigmoid's probabilities near 0 read ~1.0 against its logits) is not
            # taken for one; a Relu's output compared with its input read 0.6-13 against 0.01 on the right side
            if (at, a.name, "across", "d") in sums and rel(at, a.name, "across") < min(rel(at, "", "compared"), 0.5):
                crossed.append((at, pt.reference, a.name, f"rel. L2 {rel(at, a.name, 'across'):.3g} across it, "
                                                          f"{rel(at, '', 'compared'):.3g} to the compared tensor"))
    return len(checks), crossed
