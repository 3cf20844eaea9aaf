import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def _has_tensorrt() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    no_gpu = pytest.mark.skip(reason="no CUDA device visible to torch")
    no_trt = pytest.mark.skip(reason="tensorrt cannot be imported here")
    for item in items:
        if "gpu" in item.keywords and not _has_cuda():
            item.add_marker(no_gpu)
        if "tensorrt" in item.keywords and not _has_tensorrt():
            item.add_marker(no_trt)


@pytest.fixture(autouse=True)
def _chdir_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cache")
    os.environ["OPTBENCH_CACHE"] = str(d)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p
