"""The reference and every variant are fed the same arrays in the same memory layout. A data entrypoint may return
views (HWC images transposed to CHW, as image pipelines written in numpy do): a torch module fed such a view gets a
channels-last tensor, and its convolutions then run other oneDNN kernels than on the C-contiguous copy the variants
read back from the run's data.npz. That difference (about 3e-7 on kelp-o-matic's LR-ASPP) is the feeding's, not the
variant's: it must not be reported as drift."""

import json
import warnings

import numpy as np
import pytest
import torch

from optbench.cli import main
from tests.conftest import write_spec


class ByLayout(torch.nn.Module):
    """Stands in for layout-dependent kernels, deterministically: doubles what it is fed unless the input is
    C-contiguous."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if x.is_contiguous() else 2.0
        return x.flatten(1) * scale


DATA = '''
import numpy as np
import pytest


def images(count, seed=0):
    hwc = np.random.default_rng(seed).normal(size=(count, 8, 8, 3)).astype(np.float32)
    return {"x": hwc.transpose(0, 3, 1, 2)}  # (N, 3, 8, 8), channels-last in memory
'''

SPEC = """\
name: layout
model: {{source: torchscript, path: "{model}"}}
inputs: [{{name: x, shape: [batch, 3, 8, 8], dtype: float32}}]
data: {{source: python, entrypoint: "data.py:images", calibration: 4, eval: 8}}
outputs: [{{name: output, batch_axis: 0}}]
variants: {{precision: [fp32], batch_size: [1, 4]}}
backends: [{{name: torch, device: cpu}}]
measure: {{mode: judge}}
"""


@pytest.mark.slow
def test_a_view_from_the_data_entrypoint_is_fed_as_the_variants_get_it(tmp_path):
    model = tmp_path / "by_layout.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script is deprecated, and still what models ship
        torch.jit.script(ByLayout()).save(str(model))
    (tmp_path / "data.py").write_text(DATA)
    spec = write_spec(tmp_path, SPEC.format(model=model))
    assert main(["run", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report"]) == 0
    rows = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert {r["batch_size"] for r in rows} == {1, 4}
    for r in rows:
        assert r["status"] == "ok" and r["drift_rel_l2"] == 0.0, (r["variant_id"], r["drift_rel_l2"], r["error"])
    with np.load(tmp_path / "run" / "work" / "reference.npz") as f, \
            np.load(tmp_path / "run" / "work" / "data.npz") as d:
        ref, fed = f["static/output"], d["eval/x"]
    np.testing.assert_array_equal(ref, fed.reshape(len(fed), -1))  # the module's C-contiguous answer: x itself
