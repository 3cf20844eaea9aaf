"""Drift localisation on graphs ONNX Runtime fuses: a QDQ CNN whose Relus the quantizer folded into the Convs and
Gemm before them, and an MLP of MatMul+Add+Relu (fused into Gemm by ORT's pre-processing). No tensor is compared
across a fold; a planted damaged Conv or Gemm ranks first; the graph-output drift explain computes is the row's
(same items, same reference, the same int8 kernels); where it is not, that is said first, the report shows it and
tune does not act on the ranking; a variant explain cannot read is one line."""

import json
import re
import shutil

import numpy as np
import onnx
import pytest
from conftest import write_spec
from models.fused import CNN_CONVS, cnn, mlp, pair, qdq, scores, steps

from optbench.cli import main
from optbench.errors import OptbenchError
from optbench.explain.localize import localize

# one worker builds the graphs and the run once (conftest's automatic grouping marks items after pytest-xdist has
# read the groups)
pytestmark = pytest.mark.xdist_group("explain-fused")
DAMAGED_CONV = CNN_CONVS[1]  # the second Conv: the first Relu's quantization before it, its own Relu folded after
DAMAGED_GEMM = "/layers/layers.2/MatMul"  # the MLP's middle layer (MatMul+Add, fused into one Gemm, +Relu)


def _x(shape, n: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def _batches(x: np.ndarray, size: int = 4):
    return [({"x": x[i:i + size]}, size) for i in range(0, len(x), size)]


@pytest.fixture(scope="session")
def graphs(tmp_path_factory):
    """fp32 graphs and their QDQ int8 graphs (made as optbench's int8 variants are), clean and with one damaged
    layer."""
    d = tmp_path_factory.mktemp("fused")
    cal_c, cal_m = _x((1, 8, 8)), _x((16,))
    out = {"cnn": cnn(d / "cnn.onnx"), "mlp": mlp(d / "mlp.onnx")}
    out["cnn_q"] = qdq(out["cnn"], d / "cnn_q.onnx", [{"x": cal_c[i:i + 8]} for i in range(0, 32, 8)])
    out["cnn_bad_q"] = qdq(cnn(d / "cnn_bad.onnx", damage=DAMAGED_CONV), d / "cnn_bad_q.onnx",
                           [{"x": cal_c[i:i + 8]} for i in range(0, 32, 8)])
    out["mlp_bad_q"] = qdq(mlp(d / "mlp_bad.onnx", damage=1), d / "mlp_bad_q.onnx",
                           [{"x": cal_m[i:i + 8]} for i in range(0, 32, 8)])
    return out


def test_no_node_is_compared_across_a_fold(graphs):
    ref = onnx.load(str(graphs["cnn"])).graph
    writes = {n.output[0]: n for n in ref.node}
    relu_after = {writes[n.input[0]].name: n for n in ref.node if n.op_type == "Relu"}  # node -> the Relu after it
    assert sorted(relu_after) == sorted(CNN_CONVS + ["/head/head.1/Gemm"])
    left = {n.name for n in onnx.load(str(graphs["cnn_q"])).graph.node}
    assert not left & {r.name for r in relu_after.values()}  # the quantizer folded every Relu
    loc = localize(graphs["cnn"], graphs["cnn_q"], _batches(_x((1, 8, 8), 16, seed=2)))
    by_node = {d.node: d for d in loc.nodes}
    # no saw tooth: compared before the Relu, each Conv's output error read 0.9-1.4 here, and the MaxPool after it,
    # reading the same tensor after the fold, fell back to 0.01
    assert max(d.error for d in loc.nodes) < 0.5
    for node, relu in relu_after.items():
        # compared after the folded Relu, with the fp32 graph's Relu output: the Relu is part of what it stands for
        assert by_node[node].compared == relu.output[0] and by_node[node].reference_nodes == (node, relu.name)
    # each compared tensor is written, in the fp32 graph, by the last of the nodes the entry stands for
    assert all(writes[d.compared].name == d.reference_nodes[-1] for d in loc.nodes)
    pool = by_node["/features/features.4/MaxPool"]
    assert pool.inputs_error == pytest.approx(by_node[CNN_CONVS[1]].error)


@pytest.mark.parametrize("case", ["cnn", "mlp"])
def test_a_planted_damaged_layer_ranks_first(graphs, case):
    """One Conv that feeds a Relu (CNN), one Gemm (MLP: MatMul+Add+Relu) with noise of their own size on their
    weights, quantized as the rest: that layer introduces the most, and is the first group tune would move."""
    damaged, shape = (DAMAGED_CONV, (1, 8, 8)) if case == "cnn" else (DAMAGED_GEMM, (16,))
    loc = localize(graphs[case], graphs[f"{case}_bad_q"], _batches(_x(shape, 16, seed=2)))
    top = loc.ranked(1)[0]
    assert top.group.startswith(damaged.rsplit("/", 1)[0])
    assert damaged in top.reference_nodes and "Relu" in top.reference_ops
    assert top.introduced > 1.5 * max(d.introduced for d in loc.ranked()[1:])
    group, _, nodes = loc.groups(converted_only=True)[0]
    assert group == top.group and top.node in nodes


def _two_steps(n: int, seed: int) -> np.ndarray:
    x = _x((2, 16), n, seed)
    x[:, 0] *= 30  # the first step sets the quantization range of the encoder's output
    x[:, 1] *= 0.3
    return x


def test_a_node_that_selects_values_introduces_nothing(tmp_path):
    """A Gather of the second of two steps (as an LSTM unrolled by its exporter reads each time step) from a tensor
    quantized with the first step's range: the step it selects has a relative error ten times the whole tensor's,
    but its values are the tensor's, at the tensor's scale. It introduced 0.9 of its own and ranked first (a CRNN's
    Gathers ranked above all but one Conv); the encoder whose quantization made that error ranks first."""
    fp32 = steps(tmp_path / "steps.onnx")
    cal = _two_steps(32, 1)
    q = qdq(fp32, tmp_path / "steps_q.onnx", [{"x": cal[i:i + 8]} for i in range(0, 32, 8)])
    loc = localize(fp32, q, _batches(_two_steps(16, 2)))
    gather = next(d for d in loc.nodes if d.op_type == "Gather")
    assert gather.error > 5 * gather.inputs_error  # the part it selects is far worse than the whole
    assert loc.ranked(1)[0].group == "/enc" and loc.groups(converted_only=True)[0][0] == "/enc"
    assert gather.selects and gather.introduced == 0.0
    assert any("only select or rearrange values of their input" in n for n in loc.notes)


def test_a_node_left_in_float_adds_nothing_to_its_group(tmp_path):
    """Only the Gemms quantized: the head's float Sigmoid of logits far below zero (the head's outputs, spread
    about +-24, shifted by -30) turns the absolute error of its logits — the quantization step of the head's output
    — into a relative error of the probabilities ("introduced" by a node the variant left in fp32, as nudenet's
    YOLOv8 head Sigmoid is). Moving its group to higher precision changes nothing there; the group's figure counted
    it and ranked it above the Gemms whose quantization made the error (tune moved it first)."""
    fp32 = scores(tmp_path / "scores.onnx", shift=30.0)
    cal = _x((16,), 32, 1) * 10
    q = qdq(fp32, tmp_path / "scores_q.onnx", [{"x": cal[i:i + 8]} for i in range(0, 32, 8)], op_types=["Gemm"])
    loc = localize(fp32, q, _batches(_x((16,), 16, 2) * 10))
    sigmoid = next(d for d in loc.nodes if d.op_type == "Sigmoid")
    assert not sigmoid.converted and sigmoid.introduced > 0.05 and sigmoid.group == "/head"
    groups = {g: err for g, err, _ in loc.groups(converted_only=True)}
    assert loc.groups(converted_only=True)[0][0] == "/enc/MatMul" and groups["/head"] == 0.0
    assert groups["/enc/MatMul"] == pytest.approx(max(d.introduced for d in loc.nodes if d.converted))


# ---------------------------------------------------------------- against a real row
PAIR = """\
name: pair
model: {source: onnx, path: %s}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}, {name: x, shape: [batch, 16], dtype: float32}]
data: {source: synthetic, calibration: 32, eval: 48}
variants: {precision: [int8], batch_size: [4], int8: [{samples: 32}]}
backends: [onnxruntime]
measure: {mode: judge}
budgets: {int8: {rel_l2_max: 0.01}}
"""


@pytest.fixture(scope="session")
def run(tmp_path_factory, cache_dir):
    """One int8 ONNX Runtime row of the CNN and the MLP side by side in one graph (the run's own int8 graph, made,
    judged and timed by `optbench run`): each output is judged on its own."""
    tmp = tmp_path_factory.mktemp("row")
    run = tmp / "run"
    spec = write_spec(tmp, PAIR % pair(tmp / "pair.onnx"))
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-history", "--no-report"]) == 0
    row = [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()][-1]
    assert row["status"] == "ok"
    return run, row


def test_graph_output_drift_is_the_rows(run):
    """The CNN's logits (Relus folded into Convs and a Gemm) and the MLP's scores (MatMul+Add fused into Gemm,
    Relus folded): explain's graph outputs on the row's 48 eval items against its reference are the row's, within
    10 % (they were 0.026 against 0.306, 0.998 against 0.286 when the float emulation was compared)."""
    from optbench.explain.variant import explain_variant

    run_dir, row = run
    loc = explain_variant(run_dir, row["variant_id"], items=4)
    r = loc.reproduction
    assert r is not None and r.reproduced and r.items == 48 and set(r.outputs) == {"logits", "scores"}
    for name, (explained, recorded) in r.outputs.items():
        assert recorded == row["outputs"][name]["drift_rel_l2"] and recorded > 0.01
        assert abs(explained - recorded) <= 0.1 * recorded
    assert not any("changed the kernels" in n for n in loc.notes)  # the kernels that made the row were compared
    kept = json.loads((run_dir / "explain" / f"{row['variant_id']}.json").read_text())
    assert kept["reproduction"]["outputs"]["logits"] == list(r.outputs["logits"])
    folded = {d.node: d.reference_ops for d in loc.nodes if "Relu" in d.reference_ops}
    assert set(folded) >= set(CNN_CONVS) and ("MatMul", "Add", "Relu") in folded.values()


@pytest.fixture
def unreproduced(run, tmp_path):
    """The run with its row's drift recorded at a third of what ONNX Runtime's CPU kernels give, as a row made by
    kernels explain does not run would read, and a row of a backend whose program explain cannot read."""
    run, row = run
    copy = tmp_path / "run"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("explain"))
    other = json.loads(json.dumps(row))
    for m in [other, other["outputs"]["logits"], other["outputs"]["scores"]]:
        m["drift_rel_l2"] /= 3
    program = {**json.loads(json.dumps(row)), "variant_id": "executorch.fp32.none.bs4", "backend": "executorch",
               "backend_name": "executorch", "precision": "fp32", "artifact": None}
    with open(copy / "results.jsonl", "a") as f:
        f.write(json.dumps(other) + "\n" + json.dumps(program) + "\n")
    return copy, other


def test_an_emulation_that_does_not_reproduce_the_row_is_said_first(unreproduced, capsys):
    from optbench.explain.variant import explain_variant

    run, row = unreproduced
    assert main(["explain", str(run), row["variant_id"], "--items", "4"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert first.startswith("explain's emulation differs from the row: graph output '")
    view = re.search(r"graph output '(\w+)'", first).group(1)
    assert f"{row['outputs'][view]['drift_rel_l2']:.3g} in the row (200% apart, 48 eval items)" in first
    loc = explain_variant(run, row["variant_id"], items=4, save=False)
    assert not loc.reproduced and loc.reproduction.worst[3] == pytest.approx(2.0, rel=1e-6)


def test_the_report_shows_the_check_and_tune_ignores_a_ranking_that_failed_it(unreproduced):
    from optbench.report.render import write_report
    from optbench.specfile.load import load_spec
    from optbench.tune.driver import TuneOptions, Tuner
    from optbench.tune.strategy import Candidate

    run, row = unreproduced
    html = write_report(run, run / "report.html").read_text()
    section = html.split("Where the drift comes from")[1]
    assert row["variant_id"] in section and "emulation differs from the row: graph output" in section
    spec = load_spec(run / "spec.yaml", ["search={}"])
    tuner = Tuner(spec, TuneOptions(run_dir=run, spec_path=run / "spec.yaml", quiet=True))
    c = Candidate("int8")
    tuner.record.rankings[c.key] = {"variant": row["variant_id"], "groups": [["/features/features.0", 0.3, ["n"]]],
                                    "all_nodes": ["n"], "reproduced": False, "reproduction": "it differs"}
    assert tuner._rank(c) == [] and any("was not used: it differs" in n for n in tuner.record.notes)


def test_a_variant_explain_cannot_read_is_one_line(unreproduced, capsys):
    from optbench.explain.variant import explain_variant

    run, _ = unreproduced
    with pytest.raises(OptbenchError, match="executorch.*does not explain this variant"):
        explain_variant(run, "executorch.fp32.none.bs4")
    assert main(["explain", str(run), "executorch.fp32.none.bs4"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "program executorch makes from the torch module" in err[0]
