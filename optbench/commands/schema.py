"""``optbench schema``: the JSON schema of a spec, or (``--row``) of a result row."""

from __future__ import annotations

import argparse
import json


def cmd_schema(args: argparse.Namespace) -> int:
    if args.row:
        from optbench.row import json_schema

        print(json.dumps(json_schema(), indent=2))
        return 0
    from optbench.specfile.schema import spec_json_schema

    print(json.dumps(spec_json_schema(), indent=2))
    return 0



def add_commands(sub) -> None:
    s = sub.add_parser("schema", help="JSON schema of the spec (--row: of a result row)")
    s.add_argument("--row", action="store_true", help="the JSON schema of a result row (results.jsonl) instead")
    s.set_defaults(fn=cmd_schema)
