"""``optbench deploy SPEC --qps N --p99-ms B``: the serving configuration of a passing variant that meets the
p99 bound at the highest QPS per device (or by ``--objective``), the devices the target needs, the runner-up, the
frontier, and a deployable fragment (see docs/deploy.md)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import optbench.clock as clock


def _number(text: str | None, flag: str, *, integer: bool = False, low: float = 0.0, inclusive: bool = False,
            high: float | None = None) -> float | int | None:
    """A command-line number, or one line naming the flag."""
    from optbench.errors import OptbenchError, strict_float

    if text is None:
        return None
    try:
        value = strict_float(text)
    except ValueError:
        raise OptbenchError(f"{flag} takes a number, found {text!r}") from None
    if not math.isfinite(value) or (value < low if inclusive else value <= low) or (high is not None and value >= high):
        bound = f"{'at least' if inclusive else 'above'} {low:g}" + (f" and below {high:g}" if high is not None else "")
        raise OptbenchError(f"{flag} takes a finite number {bound}, found {text!r}")
    if integer:
        if value != int(value):
            raise OptbenchError(f"{flag} takes a whole number, found {text!r}")
        return int(value)
    return value


def _numbers(text: str | None, flag: str, integer: bool = False, low: float = 0.0) -> tuple | None:
    from optbench.errors import OptbenchError

    if text is None:
        return None
    parts = [p.strip() for p in text.split(",")]
    if not all(parts):
        raise OptbenchError(f"{flag} takes a comma-separated list of numbers, found {text!r}")
    values = tuple(_number(p, flag, integer=integer, low=low) for p in parts)
    if len(set(values)) != len(values):
        raise OptbenchError(f"{flag}: each value once, found {text!r}")
    return values


def _graphs(text: str | None) -> tuple[bool, ...] | None:
    """``--cuda-graphs off,on``: the CUDA graphs settings to search (None: not given)."""
    from optbench.errors import OptbenchError

    if text is None:
        return None
    words = [w.strip() for w in text.split(",")]
    if not words or any(w not in ("off", "on") for w in words) or len(set(words)) != len(words):
        raise OptbenchError(f"--cuda-graphs takes off, on, or off,on; found {text!r}")
    return tuple(sorted(w == "on" for w in words))


def cmd_deploy(args: argparse.Namespace) -> int:
    from optbench.deploy.driver import DeployOptions, delays_within, deploy
    from optbench.deploy.report import answer_lines
    from optbench.deploy.space import SIZE_RULES, Grid
    from optbench.errors import OptbenchError
    from optbench.specfile.load import load_spec

    qps = _number(args.qps, "--qps")
    p99 = _number(args.p99_ms, "--p99-ms")
    if args.force and args.resume:
        raise OptbenchError("--force starts the search over and --resume continues it: give one")
    grid = Grid()
    lanes = _numbers(args.lanes, "--lanes", integer=True) or grid.lanes
    batches = _numbers(args.max_batch, "--max-batch", integer=True) or grid.max_batch
    if max(lanes) > 64 or max(batches) > 4096:
        raise OptbenchError(f"--lanes at most 64 and --max-batch at most 4096 (serving's bounds), found "
                            f"{max(lanes)} and {max(batches)}")
    delays = _numbers(args.delays_ms, "--delays-ms", low=0.0) or grid.delays_ms
    kept = delays_within(list(delays), p99)
    if not kept:
        raise OptbenchError(f"--delays-ms: no queue delay below half the p99 bound ({p99 / 2:g} ms), found "
                            f"{', '.join(f'{d:g}' for d in delays)}")
    sizes = tuple(s.strip() for s in (args.sizes or "pow2").split(","))
    if bad := [s for s in sizes if s not in SIZE_RULES]:
        raise OptbenchError(f"--sizes: {bad[0]!r} is not a size rule; expected {', '.join(SIZE_RULES)}")
    serving = {}
    if args.run_ms is not None:
        serving["min_duration_ms"] = _number(args.run_ms, "--run-ms", integer=True)
    if args.probes is not None:
        serving["peak_probes"] = _number(args.probes, "--probes", integer=True, high=51)
    if args.tolerance is not None:
        serving["peak_tolerance"] = _number(args.tolerance, "--tolerance", high=1.0)
    graphs = _graphs(args.cuda_graphs)
    spec_path = Path(args.spec)
    spec = load_spec(spec_path, args.set)
    if graphs is None:  # the spec's own serving.cuda_graphs, where it sets one
        graphs = (bool(spec.serving is not None and spec.serving.cuda_graphs),)
    if spec.serving is not None and "min_duration_ms" in serving and \
            serving["min_duration_ms"] > spec.serving.max_duration_ms:
        raise OptbenchError(f"--run-ms {serving['min_duration_ms']} is above the spec's serving.max_duration_ms "
                            f"({spec.serving.max_duration_ms})")
    run_dir = Path(args.run_dir) if args.run_dir else Path(args.out) / f"{spec.name}-deploy-{clock.stamp('%Y%m%d-%H%M%S')}"
    opts = DeployOptions(
        run_dir=run_dir, spec_path=spec_path, qps=qps, p99_ms=p99, objective=args.objective,
        max_devices=_number(args.max_gpus, "--max-gpus", integer=True),
        memory_gb=_number(args.memory_gb, "--memory-gb"),
        headroom=_number(args.headroom, "--headroom", inclusive=True, high=1.0) if args.headroom else 0.2,
        grid=Grid(tuple(sorted(lanes)), tuple(sorted(batches)), tuple(kept), sizes, graphs),
        trials=_number(args.trials, "--trials", integer=True) if args.trials else 40,
        time_budget_s=_number(args.time_budget_s, "--time-budget-s"),
        from_run=Path(args.from_run) if args.from_run else None, variants=list(args.variants or ["*"]),
        serving=serving, force=args.force, resume=args.resume,
        cache_dir=Path(args.cache_dir) if args.cache_dir else None, no_cache=args.no_cache, quiet=args.quiet,
        history=args.history_db, no_history=args.no_history)
    record = deploy(spec, opts)
    print()
    for line in answer_lines(record):
        print(line)
    a = record.get("answer") or {}
    if a.get("fragment"):
        print("\nthe fragment, to paste into the spec (fragment.yaml):\n" +
              "\n".join("  " + x for x in a["fragment"].splitlines()))
    t = a.get("triton") or {}
    if t.get("config"):
        print(f"Triton: {t['config']} (the model file: {t['model_file']})")
    elif t.get("unavailable"):
        print(f"Triton: no config.pbtxt: {t['unavailable']}")
    print(f"report: {run_dir / 'deploy.md'}\nrun directory: {run_dir}")
    return 0 if a.get("winner") else 1


def add_commands(sub) -> None:
    d = sub.add_parser("deploy", help="the serving configuration of a passing variant that meets a p99 bound at the "
                                      "highest QPS per device, and the devices a target QPS needs")
    d.add_argument("spec", help="a spec file (YAML); its serving: section, where present, gives the LoadGen settings")
    d.add_argument("--qps", required=True, metavar="N", help="the target QPS (items per second) to serve")
    d.add_argument("--p99-ms", required=True, metavar="B", help="the bound on the 99th percentile latency (ms)")
    d.add_argument("--objective", choices=["gpus", "energy", "p99"], default="gpus",
                   help="gpus: fewest devices (highest peak QPS per device; default); energy: lowest J per item; "
                        "p99: lowest p99 at each device's load")
    d.add_argument("--max-gpus", metavar="K", help="devices available at most (GPUs; on the CPU, machines like this)")
    d.add_argument("--memory-gb", metavar="G", help="memory a configuration may use per device (GiB): one that uses "
                                                    "more is kept as a data point, and larger ones are not measured")
    d.add_argument("--headroom", metavar="H", help="share of each device's measured peak left unused when sizing "
                                                   "(default 0.2)")
    d.add_argument("--lanes", metavar="1,2", help="execution lanes per device to try (serving.instances; default 1,2)")
    d.add_argument("--max-batch", metavar="1,8,32", help="the batcher's max batch sizes to try (1: no batching; "
                                                         "default 1,8,32)")
    d.add_argument("--delays-ms", metavar="0.5,1,2,4,8", help="queue delays (ms) the bisection chooses from "
                                                              "(default 0.5,1,2,4,8; those under half the bound)")
    d.add_argument("--sizes", metavar="pow2,ends", help="batch sizes prepared: pow2 (1, 2, 4, ... up to the max "
                                                        "batch; default), ends (1 and the max batch), or both")
    d.add_argument("--cuda-graphs", metavar="off,on", help="lanes that replay a CUDA graph per batch size "
                                                           "(serving.cuda_graphs) off, on, or both, where the "
                                                           "variant's lanes capture graphs (torch and torch.compile "
                                                           "on CUDA; default: the spec's serving.cuda_graphs)")
    d.add_argument("--variants", action="append", metavar="PATTERN", help="variant ids (fnmatch) to consider, of "
                                                                          "those that pass (repeatable)")
    d.add_argument("--trials", metavar="N", help="candidates measured at most (default 40)")
    d.add_argument("--time-budget-s", metavar="S", help="stop starting new steps after this many seconds")
    d.add_argument("--run-ms", metavar="MS", help="each LoadGen run's minimum duration (serving.min_duration_ms)")
    d.add_argument("--probes", metavar="N", help="server runs per peak search at most (serving.peak_probes)")
    d.add_argument("--tolerance", metavar="T", help="the peak search's relative stopping width, and the margin by "
                                                    "which a configuration must beat another to prune it")
    d.add_argument("--from-run", metavar="DIR", help="take the variants and their accuracy verdicts from this run "
                                                     "instead of running the spec")
    d.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a spec value (as for run)")
    where = d.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="the search's directory (default: OUT/NAME-deploy-TIMESTAMP)")
    where.add_argument("--out", default="results", help="root of new directories (default: results)")
    d.add_argument("--force", action="store_true", help="start the search over in a directory that holds one")
    d.add_argument("--resume", action="store_true", help="continue a search: candidates already measured are "
                                                         "replayed; --qps, --objective, --max-gpus and --headroom "
                                                         "may change (the answer is made again)")
    d.add_argument("--cache-dir", help="artifact cache (default: $OPTBENCH_CACHE or ~/.cache/optbench)")
    d.add_argument("--no-cache", action="store_true", help="rebuild every artifact")
    d.add_argument("--quiet", action="store_true", help="no progress output")
    d.add_argument("--no-history", action="store_true", help="keep the accuracy run out of the run history")
    d.add_argument("--history-db", metavar="PATH|URL", help="the history database (as for run)")
    d.set_defaults(fn=cmd_deploy)
