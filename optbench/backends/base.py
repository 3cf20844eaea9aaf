"""Backend contract and registry.

A backend turns an artifact (a torch module, an ONNX file, or a model file its own framework
runs: a SavedModel, a .tflite, an OpenVINO IR) into a :class:`Session` that runs inputs. It declares what it consumes, what it supports, and how to wait for its
device; it never reads a clock (``optbench.measure`` does). Adding a backend is one module
with one ``@register`` decorator; the plan, the sweep and measurement do not change.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from optbench.errors import SpecError
from optbench.spec.base import ModelFormat

_REGISTRY: dict[str, type[Backend]] = {}


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Target:
    """What a variant asks a backend for, as known at plan time."""

    precision: str
    device: str
    batch_size: int
    dims: dict[str, int]
    transform: str
    int8: dict | None
    model_source: str
    model: ModelFormat | None = None  # what the model source yields (see :meth:`Backend.model_reason`)
    fp16: dict | None = None  # fp16 graph settings (nodes kept in fp32); None for other precisions


@dataclass
class Artifact:
    """What the worker hands a backend: a module for torch-side backends, a file for ONNX-side ones, the model file
    as given (``native``, an :class:`optbench.models.base.NativeModel`) for a backend that runs its framework."""

    module: Any | None = None
    onnx_path: Path | None = None
    native: Any | None = None
    settings: dict | None = None
    inputs: list | None = None  # the spec's InputSpecs
    sample: dict | None = None  # one batch at the variant's shape (warm-up / compilation inside build)
    cache_dir: Path | None = None  # the artifact cache's folder, for backends with caches of their own
    cache: Any | None = None  # the run's ArtifactCache (it knows --no-cache); see :func:`artifact_cache`
    points: list | None = None  # every (batch, dims) of the spec: the dynamic range an engine must cover
    calibration: list | None = None  # calibration batches, for backends that calibrate themselves


class Session(ABC):
    """A built, runnable model. ``prepare`` moves inputs where the backend wants them (untimed)."""

    # whether the outputs of :meth:`to_numpy` carry the model's own names (ONNX, OpenVINO, TFLite, TensorFlow): they
    # are then paired with the reference's by name; a torch module's tuple has none and is read by position
    names_outputs: ClassVar[bool] = True
    # the model file the backend made of its own and runs (OpenVINO's int8 IR), where it is not the file it was given
    built_path: str | None = None

    @abstractmethod
    def prepare(self, feeds: dict[str, np.ndarray]) -> Any: ...

    @abstractmethod
    def run(self, bound: Any) -> Any: ...

    def synchronize(self) -> None:
        """Block until the device finished the last ``run`` (no-op for synchronous backends)."""

    @abstractmethod
    def to_numpy(self, result: Any) -> dict[str, np.ndarray]:
        """Every output of the model by name, in the model's order, as host arrays: floats as float32 (see
        :func:`host_array`), integer and boolean outputs (class ids after an ArgMax, masks) as they are."""

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.run(self.prepare(feeds))
        self.synchronize()
        return self.to_numpy(out)

    def close(self) -> None:
        """Release device resources."""

    def lane(self, pool: dict[str, np.ndarray], axes: dict[str, int | None], cuda_graphs: bool = False) -> Lane:
        """An execution lane for serving: it runs batches of the items of ``pool`` (every input of every serving
        sample, stacked along its batch axis in ``axes``; None marks a constant input, kept as given) by index.
        Backends whose runtime can run several calls at once give each lane its own stream or session; this
        default runs every lane through this one session, one call at a time (``describe`` says so), and captures
        no CUDA graphs."""
        if cuda_graphs:
            raise ValueError(f"serving.cuda_graphs: {type(self).__name__} lanes capture no CUDA graphs (torch on CUDA "
                             "does)")
        return SharedSessionLane(self, pool, axes)


class Lane(ABC):
    """One execution lane of a served session (Triton's model instance): ``run`` takes the pool indices of one
    batch, already padded to a size the session runs, and returns every output on the host. A lane is made, warmed
    and run on one thread of its own, so thread-bound state (a CUDA stream, CUDA graph trees) stays on it."""

    own_process = False  # True: the lane runs in a process of its own, whose compile count is its own

    @abstractmethod
    def run(self, index: np.ndarray) -> dict[str, np.ndarray]: ...

    def describe(self) -> dict[str, Any]:
        """How the lane runs: where its inputs are staged, its stream or session, its graphs."""
        return {}

    def compiles(self) -> int | None:
        """Graphs compiled so far in this process (None: the runtime compiles nothing after build, or cannot say);
        a count that grows while a timed run serves is a recompile on the clock."""
        return None

    def close(self) -> None:
        """Release what the lane staged."""


def gather(pool: dict[str, np.ndarray], axes: dict[str, int | None], index: np.ndarray) -> dict[str, np.ndarray]:
    """The inputs of the items ``index`` from a host pool, constants as they are."""
    return {k: v if axes.get(k, 0) is None else np.take(v, index, axis=axes.get(k, 0)) for k, v in pool.items()}


class SharedSessionLane(Lane):
    """A lane of a session that gives none of its own: inputs gathered from the pool in host memory and run through
    the session's ``infer``; the lanes of one session take turns (a lock), since not every runtime's session may
    be called from two threads at once."""

    def __init__(self, session: Session, pool: dict[str, np.ndarray], axes: dict[str, int | None]) -> None:
        import threading

        self.session, self.pool, self.axes = session, pool, axes
        self.lock = session.__dict__.setdefault("_lane_lock", threading.Lock())

    def run(self, index: np.ndarray) -> dict[str, np.ndarray]:
        feeds = gather(self.pool, self.axes, index)
        with self.lock:
            return self.session.infer(feeds)

    def describe(self) -> dict[str, Any]:
        return {"lane": "the variant's one session, shared by every lane (one call at a time)",
                "staging": "host memory, gathered per batch"}


class Backend(ABC):
    name: ClassVar[str]
    # "torch": a module; "onnx": an ONNX file (of any model an ONNX can be made of); a framework's name: only models of
    # that framework, as given (see ``runs``)
    consumes: ClassVar[str]
    Options: ClassVar[type[BaseModel]] = NoOptions
    # frameworks whose model files this backend runs as they are (the OpenVINO backend reads an IR), beside what it
    # consumes; the worker hands those over as ``Artifact.native``
    runs: ClassVar[tuple[str, ...]] = ()
    # the torch modules a torch-consuming backend takes: eager ones, TorchScript (scripted), torch.export (exported)
    module_kinds: ClassVar[tuple[str, ...]] = ("eager", "scripted", "exported")

    def __init__(self, options: BaseModel) -> None:
        self.options = options

    # -------- declared capabilities
    # the modules this backend imports -> the distributions that install them (versions recorded in env.json)
    requires: ClassVar[dict[str, str]] = {}
    requires_any: ClassVar[bool] = False  # one of ``requires`` suffices (alternative builds of one runtime)
    extra: ClassVar[str | None] = None  # optbench's extra that installs them
    # the modules that must import for the backend to run (default: the keys of ``requires``)
    imports: ClassVar[tuple[str, ...]] = ()
    # the modules a worker process should have imported before it forks a variant's process (start-up time)
    preload: ClassVar[tuple[str, ...]] = ()
    # the kind of model ("torch" or "onnx") whose fp32 reference this backend computes on the CPU (see
    # :meth:`reference_infer`); the reference is run through the backend registered for the model's kind
    reference_for: ClassVar[str | None] = None
    # an independent fp32 runtime: its fp32 rows against a torch reference measure the noise floor of the check
    second_opinion: ClassVar[bool] = False
    # how `optbench explain` reads a variant: "onnx" (the ONNX file it consumed, run on ONNX Runtime's CPU kernels),
    # "module" (the torch module its session runs, leaf modules hooked; see :meth:`explain_build`), None: it cannot
    # (a program or a file of another framework, whose intermediate tensors optbench does not read)
    explained: ClassVar[str | None] = None
    # the Triton Inference Server platform that serves this backend's artifact as it was measured (a
    # ``config.pbtxt``'s ``platform``), None: no Triton backend runs what this backend ran
    triton_platform: ClassVar[str | None] = None
    # whether this backend's serving lanes capture and replay a CUDA graph per batch size on a CUDA device
    # (``serving.cuda_graphs``): the deploy search varies graphs only where they do
    captures_cuda_graphs: ClassVar[bool] = False

    def explain_build(self, artifact: Artifact, target: Target) -> Session:
        """The session whose torch module `optbench explain` hooks: the one the variant ran, by default."""
        return self.build(artifact, target)

    @classmethod
    def reference_infer(cls, model: Any):
        """``infer(feeds) -> {output: host array}`` of ``model`` (a module or an ONNX path) in fp32 on the CPU,
        outputs in the model's order; for backends with ``reference_for``."""
        raise NotImplementedError(f"backend '{cls.name}' computes no reference")

    reference_title: ClassVar[str] = ""  # how a report names this backend as the reference runtime

    @classmethod
    def reference_label(cls, model_kind: str) -> str:
        """How rows name the reference this backend computes."""
        return f"{cls.name} fp32 cpu"

    @classmethod
    def installed(cls) -> tuple[str | None, dict[str, str]]:
        """Whether what this backend imports is installed, read from package metadata without importing
        anything (``optbench env``; ``env --deep`` imports): why not, or None; and the versions found."""
        import importlib.util
        from importlib.metadata import PackageNotFoundError, version

        found, missing = {}, []
        for module, dist in cls.requires.items():
            try:
                spec = importlib.util.find_spec(module)
            except (ImportError, ValueError):
                spec = None
            if spec is None:
                missing.append(dist)
                continue
            owner = owning_distribution(module, dist)
            if owner is not None:
                found[owner[0]] = owner[1]
                continue
            try:
                found[dist] = version(dist)
            except PackageNotFoundError:  # another distribution installs the module (onnxruntime-gpu, ...)
                for other in _distributions_of().get(module, []):
                    found[other] = version(other)
        if missing and not (cls.requires_any and found):
            how = f" (install the '{cls.extra}' extra)" if cls.extra else ""
            return f"{' / '.join(missing) if cls.requires_any else ', '.join(missing)} not installed{how}", found
        return None, found

    @classmethod
    def import_reason(cls) -> str | None:
        """Why the backend's modules cannot be imported ("X cannot be imported (install the 'x' extra): ..."), found
        once per process, or None."""
        return _import_reason(cls.name, cls.imports or tuple(cls.requires), cls.requires_any, cls.extra)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run in this environment (missing package, no device), or None. By default,
        why its modules do not import; backends add what else they need (a device, a converter)."""
        return cls.import_reason()

    @classmethod
    def build_unavailable_reason(cls) -> str | None:
        """Why this backend cannot build its artifacts here (``optbench build``); by default, why it cannot run."""
        return cls.unavailable_reason()

    @classmethod
    def device_of(cls, options: BaseModel) -> str:
        """The device the variant runs on, resolved at plan time ('cpu', 'cuda')."""
        return "cpu"

    @classmethod
    def skip_reason(cls, target: Target, options: BaseModel) -> str | None:
        """Why this backend cannot build ``target`` (e.g. fp16 on a CPU), or None."""
        return None

    @classmethod
    def model_reason(cls, target: Target) -> str | None:
        """Why this backend cannot take the kind of model the spec names (no torch module, no ONNX of it, a
        framework it does not run, a converter not installed), or None; planned before :meth:`skip_reason`."""
        f = target.model
        if f is None or f.framework in cls.runs:
            return None
        if cls.consumes == "torch":
            if f.module is None:
                return f"the model is {f.label}: there is no torch module to run"
            if f.module not in cls.module_kinds:
                return f"the model is {f.label}; {cls.name} takes {', '.join(cls.module_kinds)} torch modules only"
            return None
        if cls.consumes == "onnx":
            if f.onnx is None:
                return f"the model is {f.label}: {f.no_onnx}"
            return _missing(f.converts_with, f"its ONNX conversion ({f.onnx})")
        return f"{cls.name} runs {' and '.join(cls.runs) or cls.consumes} models as given; the model is {f.label}"

    @classmethod
    def onnx_precision(cls, target: Target, options: BaseModel) -> str:
        """Which ONNX an ONNX-consuming backend wants: the variant's precision, or fp32 where the
        backend realises the precision itself (builder flags, its own calibration)."""
        return target.precision

    @classmethod
    def describe(cls, options: BaseModel, target: Target) -> dict[str, Any]:
        """Settings worth recording in the result row (how the precision was realised, ...)."""
        return {}

    @classmethod
    def parse_options(cls, raw: dict, where: str) -> BaseModel:
        try:
            return cls.Options.model_validate(raw)
        except ValidationError as e:
            err = e.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in err["loc"])
            allowed = ", ".join(cls.Options.model_fields) or "none"
            raise SpecError(f"bad option for backend '{cls.name}': {err['msg']}", field=f"{where}.{loc}",
                            expected=f"options {allowed}", found=repr(err.get("input"))) from None

    # -------- building
    @abstractmethod
    def build(self, artifact: Artifact, target: Target) -> Session: ...

    def build_only(self, artifact: Artifact, target: Target) -> dict[str, Any]:
        """Build the artifact without measuring (``optbench build``): its bytes and what the backend can say
        about it. By default a session is built (which fills the artifact cache) and closed; backends whose
        build needs no runtime (engine builders on a machine without the GPU) override this."""
        session = self.build(artifact, target)
        try:
            return {"bytes": getattr(session, "artifact_bytes", None), "facts": getattr(session, "facts", None) or {},
                    "path": getattr(session, "built_path", None)}
        finally:
            session.close()


@functools.cache
def _import_reason(name: str, modules: tuple[str, ...], any_of: bool, extra: str | None) -> str | None:
    failures = []
    for module in modules:
        try:
            importlib.import_module(module)
            if any_of:
                return None
        except ImportError as e:
            failures.append(f"{module}: {e}")
        except Exception as e:  # a broken install raises anything at import
            failures.append(f"{module}: {e.__class__.__name__}: {e}")
    if not failures or (any_of and len(failures) < len(modules)):
        return None
    how = f" (install the '{extra}' extra)" if extra else ""
    return f"{' / '.join(modules) if any_of else ', '.join(m.split(':')[0] for m in failures)} cannot be imported{how}: " \
           + "; ".join(failures)[:400]


def _missing(modules: tuple[str, ...], what: str) -> str | None:
    """Why ``modules`` cannot be found (without importing them), or None."""
    import importlib.util

    gone = [m for m in modules if importlib.util.find_spec(m) is None]
    return f"{what} needs {', '.join(gone)}, not installed (install the 'tensorflow' extra)" if gone else None


def artifact_cache(artifact: Artifact):
    """The cache a backend keeps what it builds in: the run's own (so --no-cache rebuilds), else one at cache_dir."""
    if artifact.cache is not None:
        return artifact.cache
    from optbench.cache import ArtifactCache

    return ArtifactCache(artifact.cache_dir)


def register(cls: type[Backend]) -> type[Backend]:
    _REGISTRY[cls.name] = cls
    return cls


def _discover() -> None:
    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name != "base":
            importlib.import_module(f"optbench.backends.{info.name}")


def get_backend(name: str) -> type[Backend]:
    _discover()
    if name not in _REGISTRY:
        import difflib

        hint = difflib.get_close_matches(name, list(_REGISTRY), n=1)
        raise SpecError(f"unknown backend '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else ""),
                        field="backends", expected=f"one of {sorted(_REGISTRY)}", found=repr(name))
    return _REGISTRY[name]


def reference_backend(model_kind: str) -> type[Backend]:
    """The registered backend that computes the fp32 reference of a model of framework ``model_kind`` (torch, onnx,
    tensorflow, tflite, openvino): the framework the model was saved by, on the CPU."""
    found = [b for b in all_backends().values() if b.reference_for == model_kind]
    if not found:
        raise RuntimeError(f"no registered backend computes the reference of a {model_kind} model")
    return found[0]


def reference_backend_of(row: dict | str | None) -> str:
    """The backend name of a row's reference (or of reference.json, or of a reference's label): recorded since
    schema 3, read from the reference's label before."""
    row = {"reference": row} if isinstance(row, str) else (row or {})
    if isinstance(row.get("reference_backend"), str) and row["reference_backend"]:  # (a table's missing value: NaN)
        return row["reference_backend"]
    label = row.get("reference") if isinstance(row.get("reference"), str) else ""
    for b in all_backends().values():
        if b.reference_for and label.startswith(b.name):
            return b.name
    return reference_backend("torch").name


def backend_name_of(row: dict) -> str | None:
    """The registered backend of a row (``backend`` is the spec's label for it): recorded since schema 3, read from
    the label before (the registered name it is, or the longest one it starts with)."""
    if isinstance(row.get("backend_name"), str) and row["backend_name"]:  # (a DataFrame has NaN for none)
        return row["backend_name"]
    label = row.get("backend") if isinstance(row.get("backend"), str) else ""
    names = sorted(all_backends(), key=len, reverse=True)
    return next((n for n in names if label == n), None) or next((n for n in names if label.startswith(n)), None)


def second_opinion_backends() -> set[str]:
    return {n for n, b in all_backends().items() if b.second_opinion}


def owning_distribution(module: str, declared: str) -> tuple[str, str] | None:
    """The distribution (name, version) whose files hold ``module``'s top-level package where the import system
    finds it: ``declared`` where its files are there (the usual case, no scan), else the other distribution that
    installs the package there (onnxruntime-gpu in a folder ahead on the path of a system's onnxruntime: the one
    that would be imported, not the first whose metadata is found). None where no distribution's files hold it
    (a source tree) or it is not found."""
    import importlib.util
    from importlib.metadata import PackageNotFoundError, distribution

    top = module.split(".")[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return None
    origin = None if spec is None else \
        spec.submodule_search_locations[0] if spec.submodule_search_locations else spec.origin
    if not origin:
        return None
    where, rel = Path(origin).resolve(), top if spec.submodule_search_locations else f"{top}.py"

    def holding(name: str):
        """``name``'s distribution where its files hold the package found, else None."""
        try:
            d = distribution(name)
            return d if Path(d.locate_file(rel)).resolve() == where else None
        except (PackageNotFoundError, OSError, ValueError):
            return None

    if (d := holding(declared)) is not None:
        return declared, d.version
    for name in _distributions_of().get(top, []):
        if name != declared and (d := holding(name)) is not None:
            return d.metadata["Name"], d.version
    return None


@functools.lru_cache(maxsize=1)
def _distributions_of() -> dict[str, list[str]]:
    """Top-level package -> the distributions that install it (read once per process)."""
    from importlib.metadata import packages_distributions

    return packages_distributions()


def preload_modules(backends: set[str] | None = None) -> list[str]:
    """What the worker's forkserver imports once: the lists of ``backends`` (registered names; every backend where
    None), in registry order."""
    out: list[str] = []
    for name, b in all_backends().items():
        if backends is None or name in backends:
            out += [m for m in b.preload if m not in out]
    return out


def all_backends() -> dict[str, type[Backend]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def host_array(value: Any) -> np.ndarray:
    """A backend's output on the host: float32 for any float type, integer and boolean outputs unchanged (an
    ArgMax's class ids are judged by exact match, which a float cast would blur into a cosine)."""
    arr = np.asarray(value)
    return arr.astype(np.float32, copy=False) if arr.dtype.kind in "fc" or arr.dtype.name == "bfloat16" else arr
