"""What a deploy search varies: the variants that pass, and per variant the serving configuration — execution
lanes (``serving.instances``), the batcher's largest batch, its queue delay, the batch sizes prepared, and whether
the lanes replay a CUDA graph per batch size (``serving.cuda_graphs``; only where the variant's lanes capture
graphs: torch and torch.compile on CUDA)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

SIZE_RULES = ("pow2", "ends")  # every power of two up to the max batch; or only 1 and the max batch


def prepared_sizes(max_batch: int, rule: str) -> tuple[int, ...]:
    """The batch sizes a lane builds and warms for a batcher of ``max_batch`` (groups pad to the nearest above)."""
    if max_batch == 1:
        return (1,)
    if rule == "ends":
        return (1, max_batch)
    return tuple(sorted({2 ** k for k in range(max_batch.bit_length()) if 2 ** k <= max_batch} | {max_batch}))


@dataclass(frozen=True)
class Config:
    """One serving candidate: a variant served with ``instances`` lanes behind a batcher of ``max_batch`` (1: no
    batching, one request per call), waiting ``max_delay_ms`` at most for a group to fill, its lanes prepared for
    the sizes of ``sizes`` (a rule of :data:`SIZE_RULES`); ``cuda_graphs``: each lane replays one CUDA graph per
    prepared size."""

    variant: str
    instances: int
    max_batch: int
    max_delay_ms: float
    sizes: str = "pow2"
    cuda_graphs: bool = False

    @property
    def key(self) -> str:
        return f"{self.variant}|x{self.instances}|b{self.max_batch}|d{self.max_delay_ms:g}|{self.sizes}" + \
            ("|graphs" if self.cuda_graphs else "")

    @property
    def shape(self) -> tuple:
        """The configuration without its delay: what the delay bisection refines."""
        return self.variant, self.instances, self.max_batch, self.sizes, self.cuda_graphs

    def label(self) -> str:
        batching = "no batching" if self.max_batch == 1 else \
            f"batch <= {self.max_batch} ({self.sizes}), delay {self.max_delay_ms:g} ms"
        return f"{self.variant}: {self.instances} lane{'s' if self.instances > 1 else ''}, {batching}" + \
            (", CUDA graphs" if self.cuda_graphs else "")

    def batch_sizes(self) -> tuple[int, ...]:
        return prepared_sizes(self.max_batch, self.sizes)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Grid:
    """The values searched: lanes per device, max batch sizes, queue delays (ms, ascending: the bisection's axis),
    size rules, CUDA graphs off and/or on (on applies to the variants whose lanes capture graphs; the others are
    searched without)."""

    lanes: tuple[int, ...] = (1, 2)
    max_batch: tuple[int, ...] = (1, 8, 32)
    delays_ms: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    sizes: tuple[str, ...] = ("pow2",)
    cuda_graphs: tuple[bool, ...] = (False,)

    def to_dict(self) -> dict:
        out = {k: list(v) for k, v in asdict(self).items()}
        if self.cuda_graphs == (False,):  # the grid of a search made before the axis existed, which --resume matches
            del out["cuda_graphs"]
        return out


def coarse(variants: list[str], grid: Grid, captures: frozenset[str] = frozenset()) -> list[Config]:
    """Every variant × lanes × max batch × size rule × CUDA graphs at the middle delay (no delay without
    batching), smallest first: lanes, then batch, ascending (so a configuration that does not fit is met before
    the larger ones), graphs off before on. ``captures``: the variants whose lanes can capture CUDA graphs; the
    others are searched with graphs off, whatever the grid says."""
    mid = grid.delays_ms[(len(grid.delays_ms) - 1) // 2]
    out = []
    for v in variants:
        graphs = sorted(set(grid.cuda_graphs)) if v in captures else [False]
        for lanes in sorted(grid.lanes):
            for b in sorted(grid.max_batch):
                for rule in (grid.sizes if b > 1 else ("pow2",)):
                    for g in graphs:
                        out.append(Config(v, lanes, b, mid if b > 1 else 0.0, rule, g))
    return list(dict.fromkeys(out))
