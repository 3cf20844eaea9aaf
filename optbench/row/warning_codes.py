"""A row's warnings: each a code (what it means, for the report and the row's schema) and its message; warnings
of rows written before schema 3 were text, given a code by their prefix."""

from __future__ import annotations

from typing import Any

# warning codes: what each means (rows written before schema 3 held text; the prefix table maps it)
WARNING_CODES = {
    "unstable": "the round medians spread more than measure.spread_warn: the latency is not stable",
    "noisy": "the samples' CV inside the Tukey fences exceeds measure.cv_warn",
    "busy": "the machine was busy while timing (other processes, steal, throttling)",
    "gpu_clocks": "the GPU's clocks were held down (power, thermal) during the variant",
    "gpu_shared": "other processes used the GPU during the variant",
    "int8_graph": "what the int8 graph really holds differs from what was asked",
    "calibration": "the int8 calibration data is not the model's real inputs",
    "int8_size": "the int8 file is not smaller than the fp32 one",
    "interpretation": "how the model was read carries a contradiction (graph vs run)",
    "timing_process": "a further timing process of the variant was lost",
    "stateful": "the reference answers the same items differently when run twice (stateful: accept): drift includes "
                "the state it carries between calls",
    "other": "a warning of an older row that no code describes",
}
_LEGACY_PREFIXES = [("unstable", "unstable"), ("noisy", "noisy"), ("machine busy", "busy"),
                    ("GPU clocks", "gpu_clocks"), ("other processes were on the GPU", "gpu_shared"),
                    ("ops holding weights", "int8_graph"), ("the int8 graph", "int8_graph"),
                    ("per_channel was asked", "int8_graph"), ("calibrated on random", "calibration"),
                    ("the int8 file", "int8_size"), ("timing process", "timing_process")]


def warning(code: str, message: str) -> dict[str, str]:
    """A row's warning: a code from :data:`WARNING_CODES` and its message."""
    if code not in WARNING_CODES:
        raise ValueError(f"unknown warning code {code!r}")
    return {"code": code, "message": message}


def as_warning(w: Any) -> dict[str, str]:
    """A warning as written by any schema version: typed, or text (given the code its prefix says)."""
    if isinstance(w, dict) and "code" in w:
        return {"code": str(w["code"]), "message": str(w.get("message", ""))}
    text = str(w)
    for prefix, code in _LEGACY_PREFIXES:
        if text.startswith(prefix):
            return {"code": code, "message": text}
    return {"code": "interpretation" if text.startswith("output '") else "other", "message": text}


def codes(row: dict) -> list[str]:
    """The codes of a row's warnings (any schema version)."""
    return [as_warning(w)["code"] for w in row.get("warnings") or []]
