"""Backends, one module each, registered with ``@register``."""

from optbench.backends.base import Artifact, Backend, Session, Target, all_backends, get_backend, register

__all__ = ["Artifact", "Backend", "Session", "Target", "all_backends", "get_backend", "register"]
