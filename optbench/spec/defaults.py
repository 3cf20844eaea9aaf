"""Shared defaults read from ``optbench/configs/`` (measurement, export, budgets), package data."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml

from optbench.errors import OptbenchError


def configs_dir() -> Path:
    """``$OPTBENCH_CONFIGS``, else the package's own ``configs/`` (installed with it, wheel or editable)."""
    env = os.environ.get("OPTBENCH_CONFIGS")
    if env:
        return Path(env)
    from importlib.resources import files

    return Path(str(files("optbench") / "configs"))


@functools.cache
def config_defaults(name: str) -> dict[str, Any]:
    path = configs_dir() / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise OptbenchError(f"default settings file {path} is missing (the package is installed without its data, or OPTBENCH_CONFIGS names the wrong folder)") from None
    except yaml.YAMLError as e:
        raise OptbenchError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise OptbenchError(f"{path}: expected a mapping, found {type(data).__name__}")
    return data
