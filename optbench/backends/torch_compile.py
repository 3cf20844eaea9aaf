"""torch.compile (inductor) backend: compile time is build time; dynamo is reset per variant (one process each).

Inductor's on-disk caches (FX graph and autotune caches) live under the artifact cache, so a rerun of an
unchanged spec does not pay max-autotune again.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from optbench.backends.base import Artifact, Backend, Session, Target, register
from optbench.backends.torch_eager import TorchEager, TorchOptions, TorchSession


class CompileOptions(TorchOptions):
    model_config = ConfigDict(extra="forbid", frozen=True)
    mode: Literal["default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"] = Field(
        "default", description="torch.compile mode.")
    dynamic: bool | None = Field(None, description="torch.compile(dynamic=...); None lets dynamo decide.")
    freezing: bool = Field(
        False, description="Inductor freezing: weights become constants, so conv+BN fold and weights are "
                           "pre-laid-out (inference only; more memory while compiling).")


def user_inductor_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / f"optbench-inductor-{os.getuid()}"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    return base


@register
class TorchCompile(Backend):
    name = "torch-compile"
    captures_cuda_graphs = True
    requires = {"torch": "torch"}
    extra = "torch"
    consumes = "torch"
    explained = "module"
    module_kinds = ("eager", "exported")  # torch.compile refuses TorchScript modules
    Options = CompileOptions

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return TorchEager.unavailable_reason()

    @classmethod
    def device_of(cls, options: BaseModel) -> str:
        return TorchEager.device_of(options)

    @classmethod
    def skip_reason(cls, target: Target, options: CompileOptions) -> str | None:
        if options.mode == "reduce-overhead" and target.device == "cpu":
            return "mode 'reduce-overhead' is CUDA graphs, which need a CUDA device"
        return TorchEager.skip_reason(target, options)

    @classmethod
    def describe(cls, options: CompileOptions, target: Target) -> dict[str, Any]:
        return {**TorchEager.describe(options, target), "compile_mode": options.mode, "freezing": options.freezing}

    def explain_build(self, artifact: Artifact, target: Target) -> Session:
        """The eager module this backend compiles (hooks on a compiled module would see no compiled kernel)."""
        return TorchEager(self.options).build(artifact, target)

    def build(self, artifact: Artifact, target: Target) -> Session:
        import torch

        # inductor's FX-graph and autotune caches survive the process, in this user's own folder: they hold
        # generated Python and shared objects that inductor imports, so they never live in a shared cache
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(user_inductor_dir()))
        torch._dynamo.reset()
        import torch._inductor.config as inductor_config

        inductor_config.freezing = self.options.freezing  # one process per variant: it cannot leak to others
        eager = TorchEager(self.options).build(artifact, target)
        compiled = torch.compile(eager.module, mode=self.options.mode, dynamic=self.options.dynamic)
        session = TorchSession(compiled, str(eager.device), eager.dtype, eager.autocast, eager.channels_last)
        if artifact.sample is not None:
            session.infer(artifact.sample)  # compile now, so compile time is build time
        return session
