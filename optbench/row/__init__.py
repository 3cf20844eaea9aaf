"""The result row: one per variant, typed, in parts, with the unit and meaning of every column on its field.

``parts`` holds the typed parts the measuring code builds; ``warning_codes`` the warnings' codes; ``columns`` the
column catalogue read from the parts; ``flat`` the whole :class:`Row` and its flat form (``results.jsonl``), read
back from any schema version; ``reference`` what is generated from the columns: ``store.COLUMNS``'s order, the JSON
schema of a row (``optbench schema --row``) and the column reference in ``docs/columns.md``.
"""

from optbench.row.columns import BY_NAME, COLUMNS, INTEGER, RENAMED, Column, current_name
from optbench.row.flat import Row, normalize
from optbench.row.parts import (
    PARTS,
    SCHEMA_VERSION,
    Accuracy,
    ArtifactFacts,
    Failure,
    Identity,
    Memory,
    Part,
    Search,
    Serving,
    Timing,
    col,
)
from optbench.row.reference import json_schema, reference_doc
from optbench.row.warning_codes import WARNING_CODES, as_warning, codes, warning

__all__ = ["BY_NAME", "COLUMNS", "INTEGER", "PARTS", "RENAMED", "SCHEMA_VERSION", "WARNING_CODES", "Accuracy",
           "ArtifactFacts", "Column", "Failure", "Identity", "Memory", "Part", "Row", "Search", "Serving", "Timing",
           "as_warning", "codes", "col", "current_name", "json_schema", "normalize", "reference_doc", "warning"]
