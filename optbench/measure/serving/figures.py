"""The headline figures of a row's serving dict, on the engine the spec deploys (dynamic batching where the spec
asks for it): what budgets (:mod:`optbench.check`) and constraints ('serving_peak_qps >= 500') read."""

from __future__ import annotations

from typing import Any


def headline(serving: Any) -> dict[str, float | None]:
    """serving_peak_qps: the peak search's QPS at the p99 bound; energy_j_per_item: the worst LoadGen run's J per
    item net of idle; soak_rss_mb_per_min: the soak's resident memory slope (MiB per minute); soak_p99_drift: its
    last window's p99 over the first's, minus 1. None where the row did not measure it."""
    s = serving if isinstance(serving, dict) and not serving.get("error") else {}
    judged = (s.get("batching") or {}).get("judged", "none")
    soak = s.get("soak") or {}
    peaks = [p["qps"] for p in s.get("peak") or [] if p["batching"] == judged and p["qps"] is not None]
    energy = [r["energy"]["j_per_item"] for r in s.get("runs") or []
              if (r.get("energy") or {}).get("j_per_item") is not None]
    slope = soak.get("rss_slope_bytes_per_min")
    return {"serving_peak_qps": max(peaks) if peaks else (0.0 if s.get("peak") else None),
            "energy_j_per_item": max(energy) if energy else None,
            "soak_rss_mb_per_min": slope / 2**20 if slope is not None else None,
            "soak_p99_drift": soak.get("p99_drift")}
