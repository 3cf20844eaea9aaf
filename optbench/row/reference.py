"""What is generated from the columns: the JSON schema of a flat row (``optbench schema --row``) and the column
reference (``docs/columns.md``)."""

from __future__ import annotations

from typing import Any

from optbench.row.columns import COLUMNS
from optbench.row.parts import PARTS, SCHEMA_VERSION
from optbench.row.warning_codes import WARNING_CODES


def json_schema() -> dict[str, Any]:
    """The JSON schema of a flat row (``optbench schema --row``)."""
    props: dict[str, Any] = {}
    for c in COLUMNS:
        t = c.type
        if c.name == "warnings":
            props[c.name] = {"type": "array", "description": c.doc, "items": {
                "type": "object", "required": ["code", "message"],
                "properties": {"code": {"enum": sorted(WARNING_CODES)}, "message": {"type": "string"}}}}
            continue
        props[c.name] = {"description": c.doc + (f" Unit: {c.unit}." if c.unit else ""),
                         **({"type": [t, "null"]} if t != "any" else {})}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "optbench result row",
            "description": f"One variant's row in results.jsonl, schema version {SCHEMA_VERSION}.", "type": "object",
            "required": [c.name for c in COLUMNS], "properties": props, "additionalProperties": True}


def reference_doc() -> str:
    """The column reference (docs/columns.md), generated from the fields."""
    lines = ["# Result row columns", "",
             f"Generated from `optbench/row/` (schema version {SCHEMA_VERSION}); `optbench schema --row` prints the "
             "JSON schema. Every row holds every column, `null` where the variant has no value. Former names are "
             "still read from older runs and accepted in budgets and constraints.", ""]
    for part, cls in PARTS.items():
        lines += [f"## {part}", "", (cls.__doc__ or "").strip(), "", "| column | type | unit | meaning | former names |",
                  "| --- | --- | --- | --- | --- |"]
        for c in COLUMNS:
            if c.part == part:
                lines.append(f"| `{c.name}` | {c.type} | {c.unit or ''} | {c.doc} | "
                             f"{', '.join(f'`{o}`' for o in c.old)} |")
        lines.append("")
    lines += ["## warnings", "", "| code | meaning |", "| --- | --- |"]
    lines += [f"| `{k}` | {v} |" for k, v in WARNING_CODES.items()]
    return "\n".join(lines) + "\n"
