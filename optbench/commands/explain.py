"""``optbench explain RUN VARIANT``: where a variant's drift comes from, node by node."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from optbench.errors import OptbenchError


def _cell(v, width: int = 0) -> str:
    if v is None:
        return "-"
    text = f"{v:.3g}" if isinstance(v, float) else str(v)
    return text if not width or len(text) <= width else "…" + text[-(width - 1):]


def table(loc, top: int) -> str:
    cols = ["rank", "introduced", "error", "inputs", "depth", "op", "node", "stands for"]
    rows = [[str(i + 1), _cell(d.introduced), _cell(d.error), _cell(d.inputs_error), str(d.depth), d.op_type,
             _cell(d.node, 60), _cell(_stands_for(d), 40)] for i, d in enumerate(loc.ranked(top))]
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths)), "  ".join("-" * w for w in widths)]
    return "\n".join(lines + ["  ".join(v.ljust(w) for v, w in zip(r, widths)) for r in rows])


def _stands_for(d) -> str:
    """The fp32 graph's ops the compared tensor stands for ("Conv+Relu" where a Relu was folded), else its module."""
    if d.reference_ops and list(d.reference_ops) != [d.op_type]:
        return "+".join(d.reference_ops)
    return d.module or ""


def cmd_explain(args: argparse.Namespace) -> int:
    from optbench.explain.variant import explain_file, explain_variant, resolve_variant

    if args.top < 1:
        raise OptbenchError(f"--top takes a positive number of nodes, found {args.top}")
    if args.plot and Path(args.plot).suffix.lower() not in (".svg", ".png"):
        raise OptbenchError(f"--plot {args.plot}: give a file ending in .svg or .png")
    args.variant = resolve_variant(Path(args.run_dir), args.variant)  # a unique part of the id: its hash
    loc = explain_variant(Path(args.run_dir), args.variant, items=args.items, seed=args.seed)
    if args.json:
        print(json.dumps(loc.to_json(), indent=1, default=float))
        return 0
    if loc.reproduction is not None:
        print(loc.reproduction.sentence())
    print(f"{args.variant} against {loc.reference}, on {loc.items} eval item(s): each node's output error (rel. L2 "
          f"against the reference), the largest error among its inputs, and what it introduces (the difference)")
    if loc.outputs:
        print("graph outputs against the fp32 graph: " + ", ".join(f"{k} rel. L2 {v:.3g}" for k, v in loc.outputs.items()))
    print()
    print(table(loc, args.top))
    groups = [g for g in loc.groups(converted_only=any(d.converted for d in loc.nodes)) if g[1] > 0][:5]
    if groups:
        print("\nnode groups introducing the most (what `optbench tune` moves to higher precision first):")
        for name, err, nodes in groups:
            print(f"  {err:.3g}  {name}  ({len(nodes)} node{'s' if len(nodes) != 1 else ''})")
    for note in loc.notes:
        print(f"note: {note}")
    if args.plot:
        from optbench.report.explain import write_drift_plot

        print(f"plot: {write_drift_plot(loc, Path(args.plot), args.top)}")
    print(f"kept: {explain_file(Path(args.run_dir), args.variant)} (the report's section reads it)")
    return 0


def add_commands(sub) -> None:
    e = sub.add_parser("explain", help="where a variant's drift comes from: each node's error against the fp32 "
                                       "graph, ranked by what it introduces")
    e.add_argument("run_dir", help="the run directory (results.jsonl inside)")
    e.add_argument("variant", help="the variant id, as the report and results.jsonl name it, or any unique part of it (its "
                                        "hash)")
    e.add_argument("--items", type=int, default=8, help="eval items to run both graphs on (default 8)")
    e.add_argument("--seed", type=int, default=0, help="which eval items (default 0)")
    e.add_argument("--top", type=int, default=15, help="nodes to list (default 15)")
    e.add_argument("--plot", metavar="FILE", help="write the error-along-depth plot here (.svg or .png)")
    e.add_argument("--json", action="store_true", help="print every node's figures as JSON")
    e.set_defaults(fn=cmd_explain)
