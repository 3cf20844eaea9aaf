"""Model files from strangers: a .pt2 whose pickle would run a command, and TorchScript, SavedModel and frozen-graph
files whose ops read or write files, are refused with one line before anything of them runs; ``model.trust: true``
lets the owner of such a file run it; ordinary files pass the scan."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import pytest

from optbench.cli import main
from optbench.errors import SpecError
from optbench.models import trust
from tests.conftest import write_spec
from tests.models import frameworks as fw

MEASURE = "measure: {warmup_s: 0.0, min_iters: 2, min_duration_s: 0.0, rounds: 1, processes: 1}\n"
SPEC = """\
name: stranger
model: {{source: {source}, path: "{path}"{extra}}}
inputs: [{{name: {input}, shape: {shape}, dtype: float32}}]
data: {{source: synthetic, calibration: 4, eval: 8}}
variants: {{precision: [fp32], batch_size: [2]}}
backends: [{backend}]
"""


def _spec(tmp_path: Path, **fields: str) -> Path:
    return write_spec(tmp_path, SPEC.format(**{"extra": "", **fields}) + MEASURE)


class _Planted:
    """Unpickled, it runs a shell command that leaves ``marker`` behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def planted_pt2(clean: Path, out: Path, marker: Path) -> Path:
    """A real torch.export.save archive whose sample inputs are replaced by a pickle naming os.system."""
    import torch

    payload = io.BytesIO()
    torch.save(((_Planted(marker),), {}), payload)
    writer = torch._C.PyTorchFileWriter(str(out))
    with zipfile.ZipFile(clean) as z:
        prefix = z.namelist()[0].split("/")[0] + "/"
        for info in z.infolist():
            name = info.filename[len(prefix):]
            if name in (".data/version", ".data/serialization_id", "byteorder"):
                continue  # the writer adds its own
            data = payload.getvalue() if name == "data/sample_inputs/model.pt" else z.read(info)
            writer.write_record(name, data, len(data))
    writer.write_end_of_file()
    return out


def _reading_module():
    """Scripted from this file (TorchScript needs the source): prints, and reads a file in forward."""
    import torch

    class ReadsFiles(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 2)

        def forward(self, x):
            print("forward", x.shape)
            return self.lin(x) + torch.from_file("/etc/hostname", size=1).sum()

    return torch.jit.script(ReadsFiles())


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("torch-files")
    clean = fw.exported_file(d / "digits.pt2")
    scripted = d / "reads.pt"
    _reading_module().save(str(scripted))
    return {"clean_pt2": clean, "planted": planted_pt2(clean, d / "planted.pt2", d / "PLANTED-RAN"),
            "marker": d / "PLANTED-RAN", "reads_ts": scripted, "clean_ts": fw.torchscript_file(d / "digits.pt")}


def test_a_planted_pickle_in_a_pt2_never_runs(tmp_path, torch_files, capsys):
    spec = _spec(tmp_path, source="exported", path=str(torch_files["planted"]), input="image",
                 shape="[batch, 1, 8, 8]", backend="{name: torch, device: cpu}")
    code = main(["run", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet", "--no-report"])
    err = capsys.readouterr().err
    assert code == 2
    assert not torch_files["marker"].exists()  # the command the pickle names never ran
    assert "posix.system" in err and "weights_only=True" in err and "model.trust: true" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    for spec_less in (["plan", str(torch_files["planted"])], ["plan", str(torch_files["reads_ts"]), "--input",
                                                              "x=batch,4"]):  # the file read to make a spec
        assert main(spec_less) == 2
        err = capsys.readouterr().err
        assert ("posix.system" in err or "aten::from_file" in err) and len(err.strip().splitlines()) == 1
    assert not torch_files["marker"].exists()


def test_a_clean_pt2_still_loads_with_weights_only(torch_files):
    from optbench.models import load_model
    from optbench.spec.model_files import ExportedModel

    model = ExportedModel(source="exported", path=str(torch_files["clean_pt2"]))
    assert load_model(model, Path("/")).module is not None


def test_torchscript_that_reads_files_is_refused_unless_trusted(tmp_path, torch_files):
    from optbench.models import load_model
    from optbench.spec.model_files import TorchScriptModel

    hostile = TorchScriptModel(source="torchscript", path=str(torch_files["reads_ts"]))
    with pytest.raises(SpecError) as e:
        load_model(hostile, Path("/"))
    assert "aten::from_file" in str(e.value) and "prim::Print" in str(e.value)
    trusted = TorchScriptModel(source="torchscript", path=str(torch_files["reads_ts"]), trust=True)
    assert load_model(trusted, Path("/")).module is not None
    assert trust.torchscript_ops(torch_files["clean_ts"], None) == set()
    assert trust.exported_ops(torch_files["clean_pt2"], None) == set()


# ---------------------------------------------------------------- TensorFlow (after torch.export: see conftest)
@pytest.fixture(scope="module")
def tf_files(tmp_path_factory):
    pytest.importorskip("tensorflow", reason="the 'tensorflow' extra is not installed")
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    d = tmp_path_factory.mktemp("tf-files")
    secret, written = d / "secret.txt", d / "WRITTEN"
    secret.write_text("1.5")

    class ReadsAndWrites(tf.Module):
        def __init__(self):
            self.w = tf.Variable(tf.ones([4, 2]))

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            tf.io.write_file(str(written), tf.io.read_file(str(secret)))
            return {"y": tf.matmul(x, self.w)}

    m = ReadsAndWrites()
    tf.saved_model.save(m, str(d / "hostile"), signatures={"serving_default": m.serve})
    fn = tf.function(lambda x: x + tf.strings.to_number(tf.io.read_file(str(secret)))).get_concrete_function(
        tf.TensorSpec([None, 4], tf.float32, name="x"))
    frozen = d / "reads.pb"
    frozen.write_bytes(convert_variables_to_constants_v2(fn).graph.as_graph_def().SerializeToString())
    keras = fw.keras_digits()
    return {"hostile": d / "hostile", "written": written, "frozen": frozen,
            "clean_saved": fw.saved_model(keras, d / "clean"), "clean_frozen": fw.frozen_graph(keras, d / "clean.pb")}


def test_a_saved_model_that_reads_and_writes_files_is_refused_before_it_runs(tmp_path, tf_files, capsys):
    spec = _spec(tmp_path, source="tensorflow", path=str(tf_files["hostile"]), input="x", shape="[batch, 4]",
                 backend="tensorflow")
    for command in (["plan", str(spec)], ["run", str(spec), "--run-dir", str(tmp_path / "run"), "--quiet"]):
        code = main(command)
        err = capsys.readouterr().err
        assert code == 2 and not tf_files["written"].exists()
        assert "ReadFile, WriteFile" in err and "model.trust: true" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # refused before the run made anything


def test_trust_lets_the_owner_load_it_and_ordinary_graphs_pass(tf_files):
    from optbench.models import load_model
    from optbench.spec.model_files import TensorflowModel

    with pytest.raises(SpecError, match="ReadFile"):
        load_model(TensorflowModel(source="tensorflow", path=str(tf_files["frozen"])), Path("/"))
    trusted = TensorflowModel(source="tensorflow", path=str(tf_files["hostile"]), trust=True)
    assert load_model(trusted, Path("/")).native.entry == "serving_default"
    assert not tf_files["written"].exists()  # loading runs no signature
    assert trust.saved_model_ops(tf_files["clean_saved"], "serve") == set()  # its SaveV2/RestoreV2 are not scanned
    assert trust.frozen_graph_ops(tf_files["clean_frozen"]) == set()
