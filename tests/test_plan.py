from optbench.plan import plan
from optbench.specfile.load import load_spec
from tests.conftest import write_spec

SPEC = """\
name: p
model: {source: torchvision, name: resnet18}
inputs: [{name: x, shape: [batch, 3, 32, 32]}]
data: {source: synthetic, calibration: 8, eval: 8}
variants: {precision: [fp32, fp16, int8], batch_size: [1, 4]}
backends: [{name: torch, device: cpu}, onnxruntime]
"""


def test_cartesian_product_with_skips(tmp_path):
    variants = plan(load_spec(write_spec(tmp_path, SPEC)))
    assert len(variants) == 2 * 3 * 2
    skipped = {(v.backend, v.precision): v.reason for v in variants if v.status == "skipped"}
    assert "fp16 on CPU" in skipped[("torch", "fp16")]
    assert "int8" in skipped[("torch", "int8")]
    assert ("onnxruntime", "int8") not in skipped
    assert ("torch", "fp32") not in skipped


def test_ids_are_stable_and_unique(tmp_path):
    a = [v.id for v in plan(load_spec(write_spec(tmp_path, SPEC)))]
    b = [v.id for v in plan(load_spec(write_spec(tmp_path, SPEC, "again.yaml")))]
    assert a == b and len(set(a)) == len(a)
    assert a[0].startswith("torch.fp32.none.bs1-")


def test_ids_change_with_what_they_depend_on(tmp_path):
    base = {v.id for v in plan(load_spec(write_spec(tmp_path, SPEC)))}
    other = {v.id for v in plan(load_spec(write_spec(tmp_path, SPEC.replace("32, 32", "64, 64"), "b.yaml")))}
    assert not base & other
    timing = {v.id for v in plan(load_spec(write_spec(tmp_path, SPEC + "measure: {min_iters: 3}\n", "c.yaml")))}
    assert timing == base  # measurement settings are recorded in rows, not in ids


def test_shapes_axis(tmp_path):
    text = SPEC.replace("[batch, 3, 32, 32]", "[batch, 3, side, side]").replace(
        "batch_size: [1, 4]", "batch_size: [1], shapes: [{side: 16}, {side: 32}, {batch: 8, side: 32}]")
    variants = plan(load_spec(write_spec(tmp_path, text)))
    points = {(v.batch_size, v.dims["side"]) for v in variants}
    assert points == {(1, 16), (1, 32), (8, 32)}


def test_only_restricts_torch_backends_to_chosen_variants(tmp_path):
    text = SPEC.replace("backends: [{name: torch, device: cpu}, onnxruntime]",
                        "backends:\n  - {name: torch, device: cpu, only: ['fp32.bs4']}\n"
                        "  - {name: torch-compile, device: cpu, only: ['*.bs1'], label: c}")
    variants = plan(load_spec(write_spec(tmp_path, text)))
    kept = {(v.backend, v.precision, v.batch_size) for v in variants if v.status != "skipped"}
    assert kept == {("torch", "fp32", 4), ("c", "fp32", 1)}
    why = {(v.backend, v.precision, v.batch_size): v.reason for v in variants if v.status == "skipped"}
    assert "restricted by options.only to ['fp32.bs4']" in why[("torch", "fp32", 1)]
    assert "fp16 on CPU" in why[("c", "fp16", 1)]  # the precision's own reason comes first
