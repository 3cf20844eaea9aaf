"""The experiment spec: models, loading, validation."""

from optbench.spec.load import load_spec
from optbench.spec.models import BackendSpec, InputSpec, MeasureSettings, Spec

__all__ = ["BackendSpec", "InputSpec", "MeasureSettings", "Spec", "load_spec"]
