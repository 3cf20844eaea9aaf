"""Backends, one module each, registered with ``@register``."""

from optbench.backends.base import (
    Artifact,
    Backend,
    Session,
    Target,
    all_backends,
    backend_name_of,
    get_backend,
    preload_modules,
    reference_backend,
    reference_backend_of,
    register,
    second_opinion_backends,
)

__all__ = ["Artifact", "Backend", "Session", "Target", "all_backends", "backend_name_of", "get_backend", "preload_modules",
           "reference_backend", "reference_backend_of", "register", "second_opinion_backends"]
