"""Files a spec names, read the same way everywhere: paths relative to the spec, files inside installed packages,
ONNX files checked, content digests, and the Python entrypoints a spec runs."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optbench.digest import file_digest
from optbench.errors import SpecError


def resolve_path(value: str, spec_path: Path) -> Path:
    """Relative paths are tried from the spec's folder first, then from the working directory (so a spec runs
    from anywhere); a path found in neither is returned as the spec's folder would have it."""
    p = Path(value)
    if p.is_absolute():
        return p
    beside = spec_path.parent / p
    if beside.exists():
        return beside
    return p if p.exists() else beside


def resolve_model_file(value: str, spec_path: Path, file: str | None = None, line: int | None = None,
                       folder: bool = False) -> Path:
    """A model file path, or ``package:NAME/path/in/it.onnx``: a file inside an installed package, found with
    importlib's finder without importing the package (importing rapidocr pulls cv2, silero's torch). ``folder``:
    a folder is accepted too (a SavedModel)."""
    def there(path: Path) -> bool:
        return path.is_file() or (folder and path.is_dir())

    if not value.startswith("package:"):
        path = resolve_path(value, spec_path)
        if not there(path):
            raise SpecError(f"file not found (looked for {path}; relative paths are read from the spec's folder)",
                            file=file, line=line, field="model.path", found=repr(value))
        return path
    package, _, inner = value.split(":", 1)[1].partition("/")
    try:
        found = importlib.util.find_spec(package) if package else None
    except (ImportError, ValueError):
        found = None
    if found is None or not found.submodule_search_locations:
        raise SpecError("model package is not installed", file=file, line=line, field="model.path",
                        expected="'package:NAME/path' naming an installed package", found=repr(package))
    path = Path(next(iter(found.submodule_search_locations))) / inner
    if (not inner and not folder) or not there(path):  # 'package:NAME' alone: the package's folder (a transformers model)
        raise SpecError(f"no {'file or folder' if folder else 'file'} '{inner}' in package '{package}'", file=file,
                        line=line, field="model.path", expected=f"a path under {path.parent if inner else path}",
                        found=repr(value))
    return path


# ONNX element types optbench feeds -> the spec's dtype names
ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool"}


def check_onnx(path: Path, file: str, line: int | None):
    """A file given as ONNX must parse and pass the ONNX checker (catches non-ONNX and truncated files)."""
    import onnx

    try:
        proto = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(str(path))  # by path: external data resolved beside the model
    except Exception as e:
        first = (str(e).strip().splitlines() or [e.__class__.__name__])[0][:160]
        raise SpecError(f"not a valid ONNX model ({first})", file=file, line=line, field="model.path",
                        found=repr(str(path))) from None
    return proto


def import_entrypoint(entrypoint: str, spec_dir: Path, field: str = "model.entrypoint") -> Callable:
    """Import ``file.py:function`` or ``module:function`` (the only way a spec runs Python code)."""
    target, func = entrypoint.split(":")
    if target.endswith(".py") or "/" in target:
        path = resolve_path(target, spec_dir / "spec.yaml").resolve()
        # named by the file's content, not its path: pickled modules in a shared artifact cache refer to their
        # classes by this name, and the same file in another checkout must find them
        name = "optbench_user_" + file_digest(path)[:10] if path.is_file() else \
            "optbench_user_" + hashlib.sha1(str(path).encode()).hexdigest()[:10]
        module = sys.modules.get(name)
        if module is None:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                del sys.modules[name]
                raise SpecError(f"importing the entrypoint raised {e.__class__.__name__}: {e}",
                                field=field, found=repr(entrypoint)) from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise SpecError(f"cannot import entrypoint module: {e}", field=field) from None
    fn = getattr(module, func, None)
    if not callable(fn):
        raise SpecError("entrypoint is not a callable", field=field, found=repr(entrypoint))
    return fn


def call_entrypoint(fn: Callable, kwargs: dict, train, seed: int) -> Any:
    params = inspect.signature(fn).parameters
    extra = {k: v for k, v in (("train", train), ("seed", seed)) if k in params and k not in kwargs}
    return fn(**kwargs, **extra)
