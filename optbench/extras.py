"""The optional extras a feature needs, found without importing them: a model file runs on ONNX Runtime with none of
them, and what needs torch says which extra installs it, in one line (exit 2), before anything is built.

``pip install optbench`` reads model files, runs ONNX Runtime, judges and reports; ``optbench[torch]`` adds torch,
torchvision and torch-pruning: torch models (``python``, ``torchvision``, ``transformers`` sources), TorchScript and
torch.export files, the torch backends, pruning and distillation.
"""

from __future__ import annotations

import importlib.util

from optbench.errors import OptbenchError

# model sources whose model is a torch module, or read by torch
TORCH_SOURCES = frozenset({"python", "torchvision", "transformers", "torchscript", "exported"})


def importable(module: str) -> bool:
    """Whether ``module`` can be found (never imported): a broken or blocked finder counts as absent."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, extra: str, what: str) -> None:
    """Raise the one-line error naming the extra when ``module`` is not installed."""
    if not importable(module):
        raise OptbenchError(f"{what} needs {module}, which is not installed: pip install 'optbench[{extra}]'")


def torch_needs(spec) -> list[tuple[str, str, str]]:
    """What in ``spec`` needs the torch extra: (module, field, what) for each, in the spec's order."""
    needs = []
    if spec.model.source in TORCH_SOURCES:
        needs.append(("torch", "model.source", f"model source '{spec.model.source}'"))
    for t in spec.variants.transforms:
        if t != "none" and t.prune is not None:
            needs.append(("torch_pruning", "variants.transforms", f"transform '{t.name}' (prune)"))
        elif t != "none":
            needs.append(("torch", "variants.transforms", f"transform '{t.name}' (distill)"))
    return needs


# a module optbench imports for a feature -> the extra that installs it
EXTRA_OF = {"torch": "torch", "torchvision": "torch", "torch_pruning": "torch"}


def missing_extra(error: ImportError) -> str | None:
    """The one line for an import of a module an extra installs that failed (a feature that needs torch reached
    without the spec naming it), or None for any other import error."""
    module = (getattr(error, "name", None) or "").partition(".")[0]
    if module not in EXTRA_OF:
        return None
    return f"this needs {module}, which is not installed: pip install 'optbench[{EXTRA_OF[module]}]'"
