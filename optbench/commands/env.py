"""``optbench env``: versions, CPU and GPU, the backends and model sources and why any is unavailable, the cache,
the history and serving."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from optbench.commands.output import progress, table


def cmd_env(args: argparse.Namespace) -> int:
    from optbench.cache import ArtifactCache
    from optbench.env import backend_table, collect_env, source_table

    env = collect_env()
    cache = ArtifactCache(Path(args.cache_dir) if args.cache_dir else None)
    env["cache"] = {"path": str(cache.root), "bytes": cache.size_bytes()}
    say = progress if args.deep else None  # importing every runtime takes a minute: each step on stderr as it starts
    env["backends"] = backend_table(deep=args.deep, say=say)
    env["sources"] = source_table(deep=args.deep, say=say)
    from optbench.history.store import history_url, safe_url

    url = history_url()
    env["history"] = safe_url(url) if url else None  # a PostgreSQL password never printed
    from optbench.measure.serving.loadgen import loadgen_version

    lg = loadgen_version()  # from package metadata: nothing imported
    env["serving"] = f"MLPerf LoadGen (mlcommons-loadgen {lg})" if lg else \
        "unavailable: mlcommons-loadgen is not installed (pip install 'optbench[serving]')"
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    print(f"python      {env['python']}  ({env['platform']})")
    print(f"cpu         {env['cpu']}  x{env['cpu_count']}")
    for g in env["gpus"] or [{"name": "none", "driver": "-"}]:
        print(f"gpu         {g['name']}  driver {g['driver']}")
    print(f"commit      {env['commit']}")
    print("libraries   " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()))
    print(f"cache       {cache.root}  ({env['cache']['bytes'] / 2**20:.1f} MiB)")
    print(f"history     {env['history'] or 'off (OPTBENCH_HISTORY)'}")
    print(f"serving     {env['serving']}")
    columns = ["backend", "installed", "available", "builds", "reason"] if args.deep else \
        ["backend", "installed", "versions", "reason"]
    print("\n" + table(env["backends"], columns))
    print("\nmodel sources (the reference runs on the framework the model was saved by):")
    print(table(env["sources"], ["source", "reference", "available", "onnx", "reason"]))
    if not args.deep:
        print("\n(read from package metadata, nothing imported; --deep imports each runtime and probes its devices)")
    return 0



def add_commands(sub) -> None:
    e = sub.add_parser("env", help="versions, CPU/GPU, backends, model sources and why any is unavailable")
    e.add_argument("--json", action="store_true", help="print the environment as JSON")
    e.add_argument("--cache-dir", help="the artifact cache to size (default: the user's cache)")
    e.add_argument("--deep", action="store_true", help="import every runtime and probe its devices (slow): whether "
                                                       "each backend runs and builds here, and why not")
    e.set_defaults(fn=cmd_env)
