"""The spec's ``search:`` section: what ``optbench tune`` looks for (the fastest variant at one point that passes
every budget and constraint) and where (calibration, per-channel, activation symmetry, per node group int8 → fp16 →
fp32, the backends that can run the point), and when it stops."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from optbench.spec.base import Count, Finite, Strict
from optbench.spec.quant import Int8Settings


class SearchSpace(Strict):
    method: list[Literal["minmax", "entropy", "percentile"]] = Field(
        ["minmax", "percentile"], min_length=1, description="Calibration methods tried (static int8); the first "
                                                            "is the base's unless search.base says otherwise.")
    per_channel: list[bool] = Field([True], min_length=1, description="Per-channel weight scales tried.")
    symmetric_activations: list[bool] = Field([False, True], min_length=1,
                                              description="Activation scales symmetric about zero, tried.")
    fallbacks: list[Literal["fp16", "fp32"]] = Field(
        ["fp16", "fp32"], min_length=1, description="Precisions a node group may fall back to from int8, in order: "
                                                    "fp16 first, then fp32 (fp16 is dropped where the fp16 graph "
                                                    "runs no faster than fp32 on the backend).")
    backends: list[str] | None = Field(None, min_length=1, description="The spec's backends (labels) the search "
                                                                       "times candidates on; absent: every one that "
                                                                       "can run the point.")

    @model_validator(mode="after")
    def _unique(self) -> SearchSpace:
        for name in ("method", "per_channel", "symmetric_activations", "fallbacks"):
            vals = getattr(self, name)
            if len(set(vals)) != len(vals):
                raise ValueError(f"search.space.{name} lists a value twice: {vals}")
        return self


class SearchSettings(Strict):
    batch: Count | None = Field(None, description="The batch size of the point the search optimises (one of "
                                                  "variants.batch_size); absent: the spec's first point.")
    shape: dict[str, Count] | None = Field(None, description="The shape of that point (one of variants.shapes); "
                                                             "absent: the spec's first.")
    trials: PositiveInt = Field(20, le=500, description="Candidates at most (anchors included); each is built, "
                                                        "judged and timed on every search backend.")
    time_budget_s: float | None = Field(None, gt=0, allow_inf_nan=False, description="Stop proposing candidates after this many seconds "
                                                                "of search (a resumed search counts its earlier "
                                                                "time); absent: no limit but trials.")
    seed: int = Field(0, ge=0, lt=2**32, description="Seed of the eval items the ranking of node groups is "
                                                     "computed on.")
    base: Int8Settings | None = Field(None, description="The int8 settings candidates start from (static); absent: "
                                                        "the spec's first static int8 entry.")
    space: SearchSpace = Field(default_factory=SearchSpace, description="What the search may change.")
    budgets: dict[str, dict[str, Finite]] = Field(
        default_factory=dict, description="Budgets the search holds candidates to, over the spec's budgets (per "
                                          "precision or variant pattern, as budgets:); the tune run's spec keeps "
                                          "them merged, so optbench check decides alike.")
    explain_items: PositiveInt = Field(8, le=512, description="Eval items the node ranking runs both graphs on.")
    processes: PositiveInt = Field(3, le=20, description="Timing processes per candidate (measure.processes of the "
                                                        "tune run): the latency gate calls a candidate faster than "
                                                        "fp32 only from three processes a side (beyond 60 % with "
                                                        "fewer).")
    confirm: int = Field(2, ge=0, le=10, description="Timings again of the answer where its verdict against fp32 is "
                                                     "inconclusive (the machine busy while a side was timed, or noise "
                                                     "hiding the difference): the winner and fp32 are timed again in "
                                                     "pairs, alternately (as check --baseline re-times), or, where a "
                                                     "side cannot be re-timed so, as rows of the same run, their newer "
                                                     "rows replacing the older, until the gate decides or these run "
                                                     "out; every attempt is kept.")
