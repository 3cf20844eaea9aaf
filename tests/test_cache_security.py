"""A shared artifact cache is a security boundary: artifacts are used only when their files match the digests this
user recorded when building them, in a ledger outside the cache."""

import pytest

from optbench.cache import ArtifactCache, CacheIntegrityError


@pytest.fixture()
def ledger(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTBENCH_LEDGER", str(tmp_path / "ledger"))
    return tmp_path / "ledger"


def _build(folder):
    (folder / "model.pt").write_bytes(b"weights")
    (folder / "facts.json").write_text("{}")


def test_a_tampered_artifact_is_refused_with_the_reason(tmp_path, ledger):
    cache = ArtifactCache(tmp_path / "shared")
    path, cached = cache.get_or_build("model-abc", "model.pt", _build)
    assert not cached and path.read_bytes() == b"weights"
    assert not any(p.is_relative_to(cache.root) for p in ledger.rglob("*.json"))  # never beside the artifact
    assert cache.get_or_build("model-abc", "model.pt", _build) == (path, True)
    path.write_bytes(b"import os; os.system('payload')")  # another user with write access to the cache
    with pytest.raises(CacheIntegrityError, match="model.pt"):
        cache.get_or_build("model-abc", "model.pt", _build)
    with pytest.raises(CacheIntegrityError, match="refusing to load"):
        cache.verify(path)
    (path.parent / "extra.so").write_bytes(b"x")  # an added file is a change too
    with pytest.raises(CacheIntegrityError, match="extra.so"):
        cache.verify(path)


def test_an_artifact_the_ledger_does_not_know_is_rebuilt(tmp_path, ledger):
    shared = tmp_path / "shared"
    planted = shared / "model-abc"
    planted.mkdir(parents=True)
    (planted / "model.pt").write_bytes(b"someone else's pickle")
    cache = ArtifactCache(shared)
    path, cached = cache.get_or_build("model-abc", "model.pt", _build)
    assert not cached and path.read_bytes() == b"weights"
    assert cache.verify(path) == path


def test_ledgers_are_per_cache_and_private(tmp_path, ledger):
    a, b = ArtifactCache(tmp_path / "a"), ArtifactCache(tmp_path / "b")
    import shutil

    path, _ = a.get_or_build("k-1", "model.pt", _build)
    shutil.copytree(path.parent, b.root / "k-1")
    assert b.get_or_build("k-1", "model.pt", _build)[1] is False  # a copy in another cache is not vouched for
    assert (ledger.stat().st_mode & 0o077) == 0


@pytest.mark.slow  # 20-70 s on two cores
def test_a_torchvision_model_is_cached_as_plain_weights(tmp_path, cache_dir):
    """Its architecture is rebuilt from the name; the cache holds a state dict that torch.load reads with
    weights_only=True (no pickled code), and the variants match the reference."""
    import json

    import torch

    from optbench.cli import main
    from tests.conftest import write_spec

    spec = write_spec(tmp_path, """\
name: tv
model: {source: torchvision, name: resnet18}
inputs: [{name: image, shape: [batch, 3, 32, 32]}]
data: {source: synthetic, calibration: 4, eval: 8}
backends: [{name: torch, device: cpu}]
measure: {warmup_s: 0.01, min_iters: 5, min_duration_s: 0.05, rounds: 2}
""")
    run = tmp_path / "run"
    assert main(["run", str(spec), "--run-dir", str(run), "--quiet", "--no-report"]) == 0
    prepared = json.loads((run / "work" / "prepare.json").read_text())
    assert prepared["model_format"] == "state_dict"
    state = torch.load(prepared["model_path"], map_location="cpu", weights_only=True)
    assert isinstance(state, dict) and "fc.weight" in state
    row = json.loads((run / "results.jsonl").read_text().splitlines()[-1])
    assert row["status"] == "ok" and row["drift_rel_l2"] < 1e-5
