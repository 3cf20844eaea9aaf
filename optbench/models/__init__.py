"""Model sources: each turns a model spec into a ``torch.nn.Module`` in eval mode (or an ONNX file).

Sources register themselves by the spec's ``source`` tag (:func:`optbench.models.base.model_source`); adding one
is one function in :mod:`optbench.models.sources`.
"""

from __future__ import annotations

from pathlib import Path

from optbench.models.base import SOURCES, LoadedModel, model_source  # noqa: F401 (the package's names)


def load_model(model_spec, spec_dir: Path, train=None, seed: int = 0) -> LoadedModel:
    """Build the model of ``model_spec``; ``train`` (Items) goes to python entrypoints that ask for it."""
    from optbench.models import sources  # noqa: F401  (registers the built-in sources)

    return SOURCES[model_spec.source](model_spec, spec_dir, train=train, seed=seed)
