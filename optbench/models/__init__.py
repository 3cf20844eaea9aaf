"""Model sources: each turns a model spec into a ``torch.nn.Module`` in eval mode (or an ONNX file).

Sources register themselves by the spec's ``source`` tag (:func:`optbench.models.base.model_source`); adding one
is one function in :mod:`optbench.models.sources` (torch and ONNX) or :mod:`optbench.models.formats` (files of
other frameworks).
"""

from __future__ import annotations

from pathlib import Path

from optbench.models.base import SOURCES, LoadedModel, model_source  # noqa: F401 (the package's names)


def load_model(model_spec, spec_dir: Path, train=None, seed: int = 0, inputs: list | None = None) -> LoadedModel:
    """Build the model of ``model_spec``; ``train`` (Items) goes to python entrypoints that ask for it. A model file of
    another framework has its inputs matched to the spec's ``inputs`` (names, dtypes, ranks)."""
    from optbench.models import formats, sources  # noqa: F401  (registers the built-in sources)
    from optbench.models.trust import refuse_untrusted

    refuse_untrusted(model_spec, spec_dir)  # before anything of the file is loaded
    loaded = SOURCES[model_spec.source](model_spec, spec_dir, train=train, seed=seed)
    if loaded.native is not None and inputs is not None:
        formats.bind_inputs(loaded.native, inputs)
    return loaded
