"""What a check says: one :class:`Result` per variant and check, collected in a :class:`Report` whose exit code
``optbench check`` returns (0: everything holds, 1: a violation)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Result:
    variant: str
    check: str
    passed: bool
    message: str = ""
    warning: bool = False
    verdict: str | None = None  # latency checks: faster | slower | same | inconclusive
    margin: float | None = None  # budget checks: how far inside (> 0) or outside (< 0) the budget, relative to it
    # a paired latency verdict (both sides re-timed, see optbench.run.retime): the ratio's interval and every pair
    interval: tuple[float, float] | None = None
    pairs: tuple = ()


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def violations(self) -> list[Result]:
        return [r for r in self.results if not r.passed and not r.warning]

    @property
    def warnings(self) -> list[Result]:
        return [r for r in self.results if not r.passed and r.warning]

    @property
    def latency_counts(self) -> dict[str, int]:
        words = [r.verdict for r in self.results if r.verdict]
        return {w: words.count(w) for w in ("same", "faster", "slower", "inconclusive")}

    @property
    def exit_code(self) -> int:
        return 1 if self.violations else 0
