"""A deploy candidate's row: one serving configuration of one variant, as measured (or why not), typed, one JSON
object per line in the search's ``candidates.jsonl`` (appended as each is measured, so a killed search keeps
what it finished and a resumed one replays it)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from optbench.deploy.space import Config

CANDIDATES = "candidates.jsonl"
# measured: its peak search ran; oom: it ran out of memory (a data point, with the error); over-memory: measured
# above --memory-gb; skipped: not measured because a smaller configuration of its variant did not fit;
# failed: its serving raised, or its requests failed
STATUSES = ("measured", "oom", "over-memory", "skipped", "failed")


@dataclass
class CandidateRow:
    """One candidate. QPS in queries (items) per second on one device, latency in ms, memory in bytes, energy in
    J per item net of the idle draw."""

    variant_id: str
    instances: int
    max_batch: int
    max_delay_ms: float
    sizes_rule: str
    status: str
    cuda_graphs: bool = False            # its lanes replayed a CUDA graph per prepared size
    backend: str | None = None           # the spec's label of the variant's backend
    backend_name: str | None = None
    precision: str | None = None
    device: str | None = None
    sizes: list[int] = field(default_factory=list)  # the batch sizes the lanes ran (prepared and warmed)
    step: int | None = None              # the search step that proposed it
    phase: str | None = None             # given (the spec's own configuration) | coarse | delay
    reason: str | None = None            # why not measured, or what failed
    peak_qps: float | None = None        # the highest target QPS whose p99 met the bound (0: none did)
    peak_achieved_qps: float | None = None
    peak_p99_ms: float | None = None     # p99 of the run at the peak
    peak_validity: str | None = None     # LoadGen's word on that run
    peak_note: str | None = None         # the peak search's note (stopped early, unbounded, ...)
    capacity_items_s: float | None = None  # a burst's throughput before the search
    j_per_item: float | None = None      # energy per item of the run at the peak (None: no counter)
    energy_source: str | None = None     # the counter, or why none was read
    memory_bytes: int | None = None      # the variant's session plus what this configuration's lanes added, at peak
    memory_source: str | None = None     # resident memory (CPU) or NVML's per-process GPU memory
    probes: list[dict] = field(default_factory=list)  # every server run of the peak search
    stalls: list[str] = field(default_factory=list)
    wall_s: float | None = None

    @property
    def config(self) -> Config:
        return Config(self.variant_id, self.instances, self.max_batch, self.max_delay_ms, self.sizes_rule,
                      bool(self.cuda_graphs))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CandidateRow:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @classmethod
    def of(cls, c: Config, status: str, **values: Any) -> CandidateRow:
        return cls(c.variant, c.instances, c.max_batch, c.max_delay_ms, c.sizes, status, c.cuda_graphs, **values)


def append(path: Path, row: CandidateRow) -> None:
    """One row appended, flushed and synced (strict JSON)."""
    from optbench.store import row_json

    with open(path, "a", encoding="utf-8") as f:
        f.write(row_json(row.to_dict()) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read(path: Path) -> dict[str, CandidateRow]:
    """The rows by configuration key (the latest of a key counts); a torn last line is left out."""
    out: dict[str, CandidateRow] = {}
    if not Path(path).exists():
        return out
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            row = CandidateRow.from_dict(json.loads(line))
        except (json.JSONDecodeError, TypeError):
            continue
        out[row.config.key] = row
    return out
