"""The latency gate: one verdict per variant against a baseline run (paired re-timing may settle it), and what
differs between the two runs' machines (a baseline that ran elsewhere only warns)."""

from __future__ import annotations

from pathlib import Path

from optbench.check.results import Result


def env_differences(a: dict, b: dict) -> list[str]:
    diffs = []
    for key in ("cpu", "python"):
        if a.get(key) != b.get(key):
            diffs.append(f"{key}: {b.get(key)} → {a.get(key)}")
    ga = [g.get("name") for g in a.get("gpus", [])]
    gb = [g.get("name") for g in b.get("gpus", [])]
    if ga != gb:
        diffs.append(f"gpus: {gb} → {ga}")
    la, lb = a.get("libraries", {}), b.get("libraries", {})
    for lib in sorted(set(la) | set(lb)):
        if la.get(lib) != lb.get(lib):
            diffs.append(f"{lib}: {lb.get(lib)} → {la.get(lib)}")
    # every backend's runtime, where both runs recorded them (runs before this record only ``libraries``)
    ra, rb = a.get("runtimes"), b.get("runtimes")
    if ra is not None and rb is not None:
        for lib in sorted((set(ra) | set(rb)) - set(la) - set(lb)):
            if ra.get(lib) != rb.get(lib):
                diffs.append(f"{lib}: {rb.get(lib)} → {ra.get(lib)}")
    return diffs


def check_latency(rows: dict[str, dict], base: dict[str, dict], effect: float, warn_only: bool,
                  strict: bool = False, settle=None) -> list[Result]:
    """One latency verdict per variant in both runs (see :mod:`optbench.measure.verdict`): slower fails (a
    warning where the baseline ran elsewhere), inconclusive warns (fails under ``strict``). ``settle(row, base_row,
    verdict)`` may replace a verdict by a paired one (:class:`optbench.run.retime.Retimer`)."""
    from optbench.measure.verdict import verdict_for

    out = []
    for vid, row in rows.items():
        old = base.get(vid)
        if row.get("status") != "ok" or not old or old.get("status") != "ok":
            continue
        v = verdict_for(row, old, effect)
        if settle is not None:
            v = settle(row, old, v)
        passed = v.word in ("same", "faster")
        warning = (v.word == "slower" and warn_only) or (v.word == "inconclusive" and not strict)
        message = v.line + (f"; would pass with --min-effect {v.ratio - 1:.2f}"
                            if v.word == "slower" and v.ratio is not None else "")
        out.append(Result(vid, "latency", passed, message, warning=warning and not passed, verdict=v.word,
                          interval=v.interval, pairs=v.pairs))
    return out


def retimer(run_dir: Path, baseline: Path, effect: float, retime: str, pairs: int | None, say):
    """What settles the latency verdicts (see :class:`optbench.run.retime.Retimer`), or None for ``retime`` off."""
    if retime == "off":
        return None
    from optbench.run.retime import Retimer

    options = {"pairs": pairs} if pairs else {}
    return Retimer(run_dir, baseline, effect, always=retime == "always", say=say or (lambda s: None), **options)
