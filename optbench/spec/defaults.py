"""Shared defaults read from ``configs/`` (measurement, export, budgets)."""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml

from optbench.errors import OptbenchError


def configs_dir() -> Path:
    """``$OPTBENCH_CONFIGS``, else the repository's ``configs/`` beside the package."""
    env = os.environ.get("OPTBENCH_CONFIGS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "configs"


@functools.cache
def config_defaults(name: str) -> dict[str, Any]:
    path = configs_dir() / f"{name}.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise OptbenchError(f"default settings file {path} is missing (set OPTBENCH_CONFIGS)") from None
    except yaml.YAMLError as e:
        raise OptbenchError(f"{path}: invalid YAML: {e}") from None
    if not isinstance(data, dict):
        raise OptbenchError(f"{path}: expected a mapping, found {type(data).__name__}")
    return data
