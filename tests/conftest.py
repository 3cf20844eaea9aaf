import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# triton (torch.compile's and torch.export's) loaded into a process that has loaded TensorFlow crashes it; several
# tests import TensorFlow themselves (to write .tflite and SavedModel files) and an xdist worker runs many tests, so
# triton is loaded first, as optbench.frameworks.tensorflow() does (0.2 s)
if importlib.util.find_spec("triton") is not None:
    import triton  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
# the suite never writes to the user's run history; tests of the history name their own databases
os.environ["OPTBENCH_HISTORY"] = "off"


def _pin_worker() -> None:
    """Under pytest-xdist, each worker on CPUs of its own (2 workers on 2 cores: one core each), before anything
    starts a thread pool: optbench sizes ONNX Runtime's and torch's pools by the process's affinity, so the workers'
    pools no longer contend for the same cores (two pools of two spinning threads on two cores), and the processes
    a worker starts inherit its CPUs. Nothing here is timed (timing tests are `serial`, run without xdist)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if not worker.startswith("gw") or not count.isdigit() or int(count) < 2 or not hasattr(os, "sched_setaffinity"):
        return
    cpus, count, index = sorted(os.sched_getaffinity(0)), int(count), int(worker[2:])
    if len(cpus) < count:
        return
    share = len(cpus) // count
    os.sched_setaffinity(0, cpus[index * share:(index + 1) * share])


# one artifact cache, ledger and timing-lock folder per test session (per xdist worker), set before any test
# imports optbench: no test writes into the user's ~/.cache or ~/.local/state, none waits on another session's
# timing window, and the cache a test sees does not depend on which test ran first. Tests that need their own
# folders set them with monkeypatch.
# (this file is imported twice, as the suite's conftest and as tests.conftest by tests that read its specs: the
# folder is made once per process and found again by the second import; xdist workers make their own)
_MINE = f"{os.getpid()}:"
if os.environ.get("OPTBENCH_TESTS_SESSION", "").startswith(_MINE):
    _SESSION = Path(os.environ["OPTBENCH_TESTS_SESSION"][len(_MINE):])
else:
    _pin_worker()
    _SESSION = Path(tempfile.mkdtemp(prefix="optbench-tests-"))
    os.environ["OPTBENCH_TESTS_SESSION"] = _MINE + str(_SESSION)
    for _name, _sub in (("OPTBENCH_CACHE", "cache"), ("OPTBENCH_LEDGER", "ledger"), ("OPTBENCH_LOCK_DIR", "locks")):
        (_SESSION / _sub).mkdir(mode=0o700)
        os.environ[_name] = str(_SESSION / _sub)


def pytest_sessionstart(session):
    """The worker processes' forkserver started once per test process with torch's and ONNX Runtime's libraries
    (what most sweeps here run), importing them beside the first tests: a forkserver is started by the first sweep of a process
    and keeps its imports for the process's life, so one started by an ONNX-only sweep would leave every later
    torch variant to import torch itself. (Not in pytest-xdist's controller, which runs no test.)"""
    if os.environ.get("PYTEST_XDIST_WORKER") or not getattr(session.config.option, "numprocesses", None):
        from optbench.run.supervise import backend_preload, warm_forkserver

        warm_forkserver(backend_preload({"torch", "onnxruntime"}), wait=False)


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _tensorrt_reasons() -> tuple[str | None, str | None]:
    """Why TensorRT cannot build engines here, and why it cannot run them (None: it can)."""
    from optbench.backends.tensorrt import build_unavailable, unavailable

    return build_unavailable(), unavailable()


def _shared_fixture(item) -> str | None:
    """The first module- or session-scoped fixture an item uses (beside the session's folders), as a group name:
    under pytest-xdist (``--dist loadgroup``) the tests that share one run on one worker, so it is built once."""
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {}) or {}
    for name in sorted(defs):
        for d in defs[name]:
            # the suite's own fixtures (pytest's, like tmp_path_factory, have no baseid): each is built per worker
            if d.scope in ("module", "session") and d.baseid and name != "cache_dir":
                return f"{d.baseid}::{name}"
    return None


# fixtures that time real load and whose tests assert on what they timed (achieved QPS near its target, a p99
# under its bound): their tests are `serial`, run apart from pytest-xdist's workers (see docs/contributing.md's test command)
SERIAL_FIXTURES = {"served"}
# fixtures that build a real sweep or a set of framework files (a minute or more on two cores): their tests are
# `slow`, out of the quick `-m "not slow"` loop (the whole suite runs them)
SLOW_FIXTURES = {"small_run", "keras_files", "two_runs", "tiny_run"}


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks this adds
def pytest_collection_modifyitems(config, items):
    no_gpu = pytest.mark.skip(reason="no CUDA device visible to torch")
    reasons = None
    for item in items:
        if SERIAL_FIXTURES & set(getattr(item, "fixturenames", ())) or "gpu" in item.keywords:
            item.add_marker(pytest.mark.serial)
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) and "slow" not in item.keywords:
            item.add_marker(pytest.mark.slow)
        if (group := _shared_fixture(item)) is not None and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(group))
        if "gpu" in item.keywords and not _has_cuda():
            item.add_marker(no_gpu)
        if "tensorrt" in item.keywords:
            reasons = reasons or _tensorrt_reasons()
            # tests that run engines are marked gpu too: they need TensorRT's runtime, not only its builder
            why = reasons[1] if "gpu" in item.keywords else reasons[0]
            if why:
                item.add_marker(pytest.mark.skip(reason=why))
    _longest_first(items)


def _longest_first(items) -> None:
    """Modules with the most slow tests first (each module's tests keep their order): pytest-xdist hands work out in
    collection order, so the long tests start early and the short ones fill the workers' ends."""
    def module(item) -> str:
        return item.module.__name__ if getattr(item, "module", None) else ""

    slow: dict[str, int] = {}
    for item in items:
        slow[module(item)] = slow.get(module(item), 0) + ("slow" in item.keywords)
    order = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda it: (-slow[module(it)], order[id(it)]))


@pytest.fixture(autouse=True)
def _chdir_root(monkeypatch):
    monkeypatch.chdir(ROOT)


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION, ignore_errors=True)


@pytest.fixture(scope="session")
def cache_dir():
    """The session's artifact cache (OPTBENCH_CACHE, set when the suite starts)."""
    return _SESSION / "cache"


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# one batch-1 variant of a plain linear torch module on the CPU, timed briefly: for tests of the sweep's machinery
PLAIN_TORCH = """\
name: hard
model: {source: python, entrypoint: "tests/models/faulty.py:build_plain"}
inputs: [{name: x, shape: [batch, 4]}]
data: {source: synthetic, calibration: 8, eval: 16}
variants: {batch_size: [1]}
backends: [{name: torch, device: cpu}]
measure: {warmup_s: 0.0, min_iters: 5, min_duration_s: 0.0}
"""


# one fp32 digits variant on ONNX Runtime, timed briefly: for tests of the run machinery around a variant
TINY = """\
name: tiny
model: {source: python, entrypoint: "%s", kwargs: {epochs: 1, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 32, eval: 64}
variants: {precision: [fp32], batch_size: [1]}
backends: [onnxruntime]
measure: {warmup_s: 0.01, min_iters: 5, min_duration_s: 0.02, rounds: 1, processes: 1}
""" % (ROOT / "experiments" / "models" / "digits.py:build")


SMALL = """\
name: small
model: {source: python, entrypoint: "experiments/models/digits.py:build", kwargs: {epochs: 4, width: 8}}
inputs: [{name: image, shape: [batch, 1, 8, 8], dtype: float32}]
data: {source: digits, calibration: 128, eval: 256}
variants:
  precision: [fp32, int8]
  batch_size: [1, 16]
  transforms:
    - none
    - {name: pruned, prune: {method: l1-structured, amount: 0.5, finetune_epochs: 2}}
    - name: distilled
      distill: {student: {source: python, entrypoint: "experiments/models/digits.py:build_student"}, epochs: 6, alpha: 0.7}
backends: [{name: torch, device: cpu}, onnxruntime]
measure: {warmup_s: 0.05, min_iters: 15, min_duration_s: 0.2, max_iters: 300}
"""


@pytest.fixture(scope="session")
def small_run(tmp_path_factory, cache_dir):
    """One real sweep shared by the end-to-end, transform, check and report tests (the slow part of the suite)."""
    from optbench.cli import main

    tmp = tmp_path_factory.mktemp("small")
    spec = write_spec(tmp, SMALL)
    run_dir = tmp / "run"
    assert main(["run", str(spec), "--run-dir", str(run_dir), "--quiet"]) == 0
    return run_dir


def judged_run(spec: Path | str, run_dir: Path, *sets: str, quiet: bool = True) -> Path:
    """``optbench run`` of a spec judged but not timed (``measure.mode: judge``, no explanation), in this process:
    its worker processes come from the forkserver the session started once. ``sets``: further ``--set`` lines."""
    from optbench.cli import main

    args = ["run", str(spec), "--run-dir", str(run_dir), *(["--quiet"] if quiet else []), "--set", "measure.mode=judge",
            *[a for s in sets for a in ("--set", s)], "--no-explain"]
    code = main(args)
    assert code == 0, f"optbench {' '.join(args)} exited {code} (its output is in the test's captured output)"
    return run_dir


# runs whose rows the tests of two modules judge, each made once per test session by the first test that asks:
# {name: (spec, --set lines, the xdist group of the tests that read it)}. The PP-OCRv4 recognizer's example
# (tests/test_examples.py) is also the conformance corpus's key ppocrv4_rec (tests/test_corpus.py, whose xcheck
# recomputes every row): one run at batch 1 (the example's) and 2 (the corpus's batch read on axis 0), on the
# example's 32 eval lines, serves both. The corpus keys captcha_crnn and nudenet_320n, run as their specs say, are
# cross-checked by tests/test_corpus.py and their int8 rows explained by tests/test_explain_corpus.py.
SHARED_RUNS = {
    "ppocr-rec": ("experiments/ppocr-rec.yaml", ("data.eval=32", "variants.batch_size=[1,2]"), "shared-ppocr-rec"),
    "corpus/captcha_crnn": ("corpus/captcha_crnn/spec.yaml", (), "explain-corpus"),
    "corpus/nudenet_320n": ("corpus/nudenet_320n/spec.yaml", (), "explain-corpus"),
}


@pytest.fixture(scope="session")
def shared_run(tmp_path_factory, cache_dir):
    """``shared_run(name)``: the run directory of SHARED_RUNS[name], made on first use. Its tests carry the entry's
    xdist group, so under pytest-xdist they share one worker and so this session."""
    made: dict[str, Path] = {}

    def get(name: str) -> Path:
        if name not in made:
            spec, sets, _ = SHARED_RUNS[name]
            made[name] = judged_run(ROOT / spec, tmp_path_factory.mktemp(name.replace("/", "-")) / "run", *sets)
        return made[name]
    return get
