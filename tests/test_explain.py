"""Drift localisation: a tiny graph with one deliberately damaged layer ranks that layer first; Q/DQ and Cast
wrappers are read under the original names; module paths from exporter names; the mixed int8/fp16 conversion."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optbench.explain.graph import module_path, plan, scope_of
from optbench.explain.localize import localize

WIDTHS = [16, 32, 32, 32, 10]


def _mlp(path, seed: int = 0, damage: int | None = None) -> None:
    """Four Gemm+Relu layers named as torch exports them (/layers/layers.K/Gemm); ``damage``: that layer's weights
    get noise of their own size, everything else identical."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], [], "input"
    for k in range(len(WIDTHS) - 1):
        w = (rng.standard_normal((WIDTHS[k + 1], WIDTHS[k])) / np.sqrt(WIDTHS[k])).astype(np.float32)
        b = (rng.standard_normal(WIDTHS[k + 1]) * 0.1).astype(np.float32)
        if k == damage:
            w = w + np.random.default_rng(99).standard_normal(w.shape).astype(np.float32) * np.abs(w).mean()
        inits += [numpy_helper.from_array(w, f"layers.{2 * k}.weight"), numpy_helper.from_array(b, f"layers.{2 * k}.bias")]
        scope = f"/layers/layers.{2 * k}"
        nodes.append(helper.make_node("Gemm", [x, f"layers.{2 * k}.weight", f"layers.{2 * k}.bias"],
                                      [f"{scope}/Gemm_output_0"], name=f"{scope}/Gemm", transB=1))
        x = f"{scope}/Gemm_output_0"
        if k < len(WIDTHS) - 2:
            act = f"/layers/layers.{2 * k + 1}"
            nodes.append(helper.make_node("Relu", [x], [f"{act}/Relu_output_0"], name=f"{act}/Relu"))
            x = f"{act}/Relu_output_0"
    nodes.append(helper.make_node("Identity", [x], ["logits"], name="/Identity"))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 16])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _batches(n: int = 16, size: int = 4):
    x = np.random.default_rng(1).standard_normal((n, 16)).astype(np.float32)
    return [({"input": x[i:i + size]}, size) for i in range(0, n, size)]


@pytest.mark.parametrize("damaged", [0, 2])
def test_the_damaged_layer_ranks_first(tmp_path, damaged):
    ref, var = tmp_path / "ref.onnx", tmp_path / "var.onnx"
    _mlp(ref)
    _mlp(var, damage=damaged)
    loc = localize(ref, var, _batches())
    top = loc.ranked(1)[0]
    assert top.node == f"/layers/layers.{2 * damaged}/Gemm"
    assert top.module == f"layers.{2 * damaged}" and top.group == f"/layers/layers.{2 * damaged}"
    # upstream of the damage nothing differs; the damaged node's inputs carry no error of their own
    assert all(d.error < 1e-6 for d in loc.nodes if d.depth < top.depth)
    assert top.inputs_error == pytest.approx(0.0, abs=1e-6) and top.introduced > 0.1
    assert loc.items == 16 and loc.outputs["logits"] > 0.1
    assert loc.groups()[0][0] == top.group


def test_qdq_wrappers_are_read_under_the_original_names(tmp_path):
    from onnxruntime.quantization import QuantFormat, quantize_static

    ref, q = tmp_path / "ref.onnx", tmp_path / "q.onnx"
    _mlp(ref)

    class Reader:
        def __init__(self):
            self.it = iter([f for f, _ in _batches()])

        def get_next(self):
            return next(self.it, None)

    quantize_static(str(ref), str(q), Reader(), quant_format=QuantFormat.QDQ, per_channel=True)
    p = plan(ref, q)
    assert {s.op_type for s in p.segments} <= {"Gemm", "Identity"}  # Q/DQ are wrappers, never ranked
    gemm = next(s for s in p.segments if s.node == "/layers/layers.2/Gemm")
    # it reads the Relu output before it, quantized; its own output is read where it is quantized (the Relu after
    # it folded into that quantization), and stands for the Relu's output
    assert gemm.inputs == ("/layers/layers.1/Relu_output_0",) and gemm.converted
    assert gemm.point.reference == "/layers/layers.3/Relu_output_0" and gemm.point.scale is not None
    assert gemm.reference_nodes == ("/layers/layers.2/Gemm", "/layers/layers.3/Relu")
    loc = localize(ref, q, _batches())
    # the quantizer folds each Relu into its Gemm's output quantization: every node left is compared
    assert not loc.unmatched and [d.node for d in loc.nodes] == [s.node for s in p.segments]
    assert all(d.error > 0 for d in loc.nodes) and 0 < loc.outputs["logits"] < 0.2


def test_mixed_graph_converts_only_the_chosen_nodes(tmp_path):
    import onnxruntime as ort

    from optbench.export.precision import convert_nodes_fp16

    ref, mixed = tmp_path / "ref.onnx", tmp_path / "mixed.onnx"
    _mlp(ref)
    facts = convert_nodes_fp16(ref, mixed, ["/layers/layers.2/Gemm", "/layers/layers.3/Relu"])
    assert facts["fp16_nodes_converted"] == 2 and facts["fp16_compute_nodes"] == 2
    m = onnx.load(str(mixed))
    casts = [n for n in m.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2  # into fp16 before the Gemm, back to fp32 after the Relu: nothing else touched
    x = _batches()[0][0]
    a = ort.InferenceSession(str(ref)).run(None, x)[0]
    b = ort.InferenceSession(str(mixed)).run(None, x)[0]
    assert b.dtype == np.float32 and np.abs(a - b).max() < 1e-2 and np.abs(a - b).max() > 0


def test_module_paths_and_scopes_from_exporter_names():
    assert module_path("/layer3/layer3.1/conv2/Conv") == "layer3.1.conv2"
    assert module_path("/model.22/cv3.0/cv3.0.0/conv/Conv") == "model.22.cv3.0.0.conv"
    assert module_path("Conv_12") is None and module_path("/Relu") is None
    assert scope_of("/model.22/Sigmoid") == "/model.22" and scope_of("Conv_12") == "Conv_12"


@pytest.mark.slow
def test_a_torch_side_variant_is_explained_through_module_hooks(tmp_path, cache_dir):
    from conftest import ROOT, write_spec

    from optbench.cli import main
    from optbench.explain.variant import explain_variant
    from optbench.store import final_rows

    spec = write_spec(tmp_path, f"""\
name: hooks
model: {{source: python, entrypoint: "{ROOT / 'experiments/models/digits.py:build'}", kwargs: {{epochs: 1, width: 8}}}}
inputs: [{{name: image, shape: [batch, 1, 8, 8], dtype: float32}}]
data: {{source: digits, calibration: 32, eval: 64}}
variants: {{precision: [bf16], batch_size: [1]}}
backends: [{{name: torch, device: cpu}}]
measure: {{warmup_s: 0.01, min_iters: 5, min_duration_s: 0.02, rounds: 2, processes: 1}}
""")
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-history", "--no-report"]) == 0
    vid = next(iter(final_rows(run)))
    loc = explain_variant(run, vid, items=4)
    names = [d.node for d in loc.nodes]
    assert names[0] == "features.0" and "head.3" in names and all(d.error > 0 for d in loc.nodes)
    first = loc.nodes[0]
    assert first.inputs_error == 0 and first.introduced == first.error  # the input is cast, not computed
    assert (run / "explain" / f"{vid}.json").exists()


@pytest.mark.slow
def test_the_report_explains_a_failing_variant_once(tmp_path, cache_dir):
    from conftest import TINY, write_spec

    from optbench.cli import main
    from optbench.report.render import write_report

    text = TINY.replace("precision: [fp32]", "precision: [fp32, int8], int8: [{samples: 32}]") + \
        'budgets: {int8: {rel_l2_max: 1.0e-6}}\n'
    run = tmp_path / "run"
    assert main(["run", str(write_spec(tmp_path, text)), "--run-dir", str(run), "--quiet", "--no-history",
                 "--no-report"]) == 0
    unexplained = write_report(run, tmp_path / "none.html", explain=False).read_text()
    assert "not explained: the report was asked to explain nothing (--no-explain)" in unexplained
    assert "Error along depth" not in unexplained and not (run / "explain").exists()
    html = write_report(run).read_text()
    kept = list((run / "explain").glob("*.json"))
    assert len(kept) == 1 and "int8" in kept[0].name
    assert "Where the drift comes from" in html and "Error along depth on 8 eval item(s)" in html
    assert "/features/features.0/Conv" in html or "/head/head.1/Gemm" in html
