"""The shipped examples on ONNX models from PyPI packages, run as a user runs them: verdicts that are right.

Each runs `optbench run experiments/NAME.yaml` once, judged but not timed (`measure.mode: judge`), and checks
what its verdicts must say. The model packages come with the `examples` extra (also in `dev`).
"""

import importlib.util

import pytest

import optbench
from optbench.cli import main
from tests.conftest import SHARED_RUNS, judged_run

pytestmark = pytest.mark.slow  # each example's sweep takes about a minute


def _need(*packages: str) -> None:
    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        pytest.skip(f"needs {missing} (pip install -e '.[examples]')")


def _run(name: str, tmp_path_factory, *sets: str) -> tuple:
    """``sets``: ``--set`` lines that make the example's eval split smaller where what is asserted does not hang on
    its size (the verdicts of each variant are the same on fewer items; the calibration split is the example's)."""
    # judged, not timed: every assertion here is about verdicts, none about a latency
    return _results(judged_run(f"experiments/{name}.yaml", tmp_path_factory.mktemp(name) / "run", *sets))


def _results(run) -> tuple:
    df = optbench.load_results(run)
    df["label"] = df.variant_id.str.split(".").str[1]
    return run, df.set_index("variant_id")


def _passes(df, label: str, fails: list[str]) -> bool:
    """No FAIL line of ``check`` names a variant with this precision label."""
    return not any(f"FAIL {vid}" in line for vid in df[df.label == label].index for line in fails)


def _check(run, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(["check", str(run)])
    return code, [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAIL")]


@pytest.fixture(scope="module")
def yolo(tmp_path_factory, cache_dir):
    _need("nudenet", "skimage")
    return _run("yolov8n", tmp_path_factory, "data.eval=32")


def test_yolov8n_dead_int8_fails_on_its_collapsed_scores(yolo, capsys):
    run, df = yolo
    assert (df.status == "ok").all(), df[["status", "error"]].to_string()
    dead = df[df.label == "int8-minmax-pc-u8"].index
    code, fails = _check(run, capsys)
    assert code == 1
    for vid in dead:
        assert any(line.startswith(f"FAIL {vid}: scores.collapsed: output 'scores' collapsed") for line in fails), fails
    for vid in df[df.label.isin(["fp32", "fp16"])].index:
        assert not any(vid in line for line in fails), fails
    html = (run / "report.html").read_text()
    best = html[html.index("Best variant"):] if "Best variant" in html else html
    assert not any(vid in best.split("</table>")[0] for vid in dead)


@pytest.fixture(scope="module")
def det(tmp_path_factory, cache_dir):
    _need("rapidocr_onnxruntime")
    return _run("ppocr-det", tmp_path_factory)


def test_ppocr_det_int8_is_really_int8(det, capsys):
    run, df = det
    assert (df.status == "ok").all(), df[["status", "error"]].to_string()
    fp32 = df[df.label == "fp32"].model_bytes.iloc[0]
    static = df[df.label == "int8-minmax-pc-u8"].iloc[0]
    graph = static.settings["int8_graph"]
    assert graph["weights"] == "S8" and graph["granularity"] == "per-channel"
    assert static.model_bytes <= 0.4 * fp32
    assert "Constant nodes → initializers" in static.settings["normalized"][0]
    fp16 = df[df.label == "fp16"].iloc[0]
    assert "BatchNormalization" in next(iter(fp16.settings["fp32_nodes_kept_for_range"].values()))
    code, fails = _check(run, capsys)
    assert _passes(df, "fp16", fails), fails


@pytest.fixture(scope="module")
def rec(shared_run):
    """The example's run as the session shares it with the corpus's key ppocrv4_rec (tests/conftest.py's
    SHARED_RUNS): the example's 32 eval lines, at batch 1 and 2 (each check below holds at every batch size)."""
    _need("rapidocr_onnxruntime")
    return _results(shared_run("ppocr-rec"))


@pytest.mark.xdist_group(SHARED_RUNS["ppocr-rec"][2])
def test_ppocr_rec_is_judged_by_the_strings_it_reads(rec, capsys):
    run, df = rec
    assert (df.status == "ok").all(), df[["status", "error"]].to_string()
    assert df.ctc_exact_rate.notna().all() and df.ctc_cer.notna().all()
    assert (df[df.label == "fp32"].ctc_label_exact_rate >= 0.9).all()  # the rendered lines are readable
    code, fails = _check(run, capsys)
    assert code == 1
    assert _passes(df, "fp16", fails), fails
    dyn = df[df.label == "int8-dyn"].index[0]
    assert any(line.startswith(f"FAIL {dyn}: ctc_exact_rate_min") for line in fails), fails


@pytest.fixture(scope="module")
def vad(tmp_path_factory, cache_dir):
    _need("silero_vad")
    return _run("silero-vad", tmp_path_factory)


def test_silero_vad_fp32_and_an_int8_pass(vad, capsys):
    run, df = vad
    assert (df.status == "ok").all(), df[["status", "error"]].to_string()
    assert df.outputs.map(lambda o: set(o) == {"output", "stateN"}).all()
    code, fails = _check(run, capsys)
    failing = {line.split(":")[0][5:] for line in fails}
    passing = set(df.index) - failing
    assert {"fp32"} <= set(df.loc[sorted(passing)].label)
    assert any(label.startswith("int8") for label in df.loc[sorted(passing)].label)
