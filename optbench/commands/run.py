"""``optbench run``, ``build`` and ``plan``: a spec (or a model file and flags) through the plan, the sweep and its
terminal tables, the recommendation and the report."""

from __future__ import annotations

import argparse
import json
from contextlib import contextmanager
from pathlib import Path

import optbench.clock as clock
from optbench.commands.output import cell, progress, table
from optbench.errors import OptbenchError


def cmd_plan(args: argparse.Namespace) -> int:
    from optbench.interpret import model_fixed_batch, read_at_plan
    from optbench.plan import plan

    with _spec_of(args) as (spec, spec_path):
        fixed = model_fixed_batch(spec, spec_path)
        interp, note = read_at_plan(spec, spec_path)  # a model file that cannot be read unambiguously: exit 2 here
    if fixed[0] is None and interp is not None and interp.fixed_batch is not None:
        fixed = (interp.fixed_batch, interp.batch_evidence)  # fixed only when run (a Reshape to 1): skipped alike
    variants = plan(spec, fixed_batch=fixed)
    rows = [{"variant_id": v.id, "status": v.status, "reason": v.reason or ""} for v in variants]
    if args.json:
        print(json.dumps({"variants": [v.to_dict() for v in variants],
                          "interpretation": interp.to_json() if interp else None, "note": note or None}, indent=1))
    else:
        if interp is not None:
            print("how optbench reads the model:\n" + interp.table() + (f"\n  {note}" if note else "") + "\n")
        elif note:
            print(f"how optbench reads the model: {note}\n")
        print(table(rows, ["variant_id", "status", "reason"]))
        n = sum(v.status == "planned" for v in variants)
        print(f"\n{len(variants)} variants: {n} planned, {len(variants) - n} skipped")
        from optbench.run.sweep import MAX_VARIANTS

        if n > MAX_VARIANTS:
            print(f"warning: {n:,} variants is more than {MAX_VARIANTS} (at tens of seconds each, hours of machine "
                  f"time); `run` asks for --max-variants {n}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from optbench.constraint import parse_constraint
    from optbench.run.sweep import run_sweep
    from optbench.store import load_results

    for text in args.constraint or []:  # a constraint no row can meet is one line before the sweep, not after it
        parse_constraint(text)
    with _spec_of(args) as (spec, spec_path):
        opts = _sweep_options(args, spec, "run", spec_path)
        run_sweep(spec, opts)
    run_dir = opts.run_dir
    df = load_results(run_dir)
    print(_run_table(df, _failing(run_dir)))
    if served := _serving_table(df):
        print("\n" + served)
    _print_decisions(run_dir, args)
    _maybe_report(run_dir, args)
    print(f"\nrun directory: {run_dir}")
    failed = int((df["status"].isin(["failed", "timeout"])).sum())
    if failed:
        print(f"{failed} variant(s) failed; see the 'error' column of {run_dir / 'results.csv'}")
    return 0


_QUICK = {"precision": "--precision", "batch": "--batch", "backend": "--backend", "shapes": "--shapes",
          "data": "--data", "labels": "--labels", "outputs": "--outputs", "input": "--input"}


@contextmanager
def _spec_of(args: argparse.Namespace):
    """The spec of `run` / `build` / `plan` and its path: a spec file with its --set overrides, or, for a model file
    (any format optbench reads, told from its content and suffix), a spec made from the model and the flags, with
    what was inferred printed; that spec is written to a temporary folder the sweep reads while it runs (the run
    directory keeps it as spec.yaml) and removed after."""
    import tempfile

    import yaml

    from optbench.errors import SpecError
    from optbench.models.detect import is_model_file
    from optbench.specfile.load import load_spec

    path = Path(args.spec)
    if not is_model_file(path):
        if given := [flag for key, flag in _QUICK.items() if getattr(args, key, None) is not None]:
            raise OptbenchError(f"{', '.join(given)} describe a spec-less run of a model file (optbench run "
                                f"model.onnx ...); with a spec, set values with --set (e.g. --set "
                                f"variants.batch_size=[1,8])")
        yield load_spec(path, args.set), path
        return
    from optbench.quick import apply_overrides, parse_inputs, parse_shapes, spec_from_model, split_list

    data, notes = spec_from_model(path, precision=split_list(args.precision, "--precision"),
                                  batch=split_list(args.batch, "--batch", int),
                                  backends=split_list(args.backend, "--backend"), shapes=parse_shapes(args.shapes),
                                  data=Path(args.data) if args.data else None, labels=args.labels,
                                  outputs=split_list(args.outputs, "--outputs"), given=parse_inputs(args.input))
    data = apply_overrides(data, args.set)
    if not getattr(args, "quiet", False) and not getattr(args, "json", False):
        print("a spec made from the model file:\n" + "\n".join(f"  {n}" for n in notes), flush=True)
    with tempfile.TemporaryDirectory(prefix="optbench-spec-") as tmp:
        spec_path = Path(tmp) / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(data, sort_keys=False))
        try:
            spec = load_spec(spec_path)
        except SpecError as e:  # the spec was made here: its error names the model file, not a temporary path
            raise SpecError(e.message, file=str(path), field=e.field, expected=e.expected, found=e.found) from None
        yield spec, spec_path


def _failing(run_dir: Path) -> dict[str, list[str]]:
    """Per variant, the accuracy checks it fails, as ``optbench check`` and the report decide them."""
    from optbench.report.build import enrich, load_run, spread_warn_of, verdicts

    run = load_run(run_dir)
    return verdicts(enrich(run["df"], spread_warn_of(run)), run)[1]


def _run_table(df, failing: dict[str, list[str]] | None = None) -> str:
    """The rows after a run: measured ones first with their verdict (a row that fails a budget says so beside
    `ok`), then failed ones with their reason; skipped variants folded into one line with their count per reason;
    a column no row has a value in (task accuracy without labels) left out."""
    from collections import Counter

    failing = failing or {}
    cols = ["variant_id", "status", "verdict", "latency_ms_p50", "throughput_items_s", "drift_rel_l2",
            "task_accuracy"]
    order = {"ok": 0, "built": 0, "failed": 1, "timeout": 1}
    records = df.to_dict("records")
    skipped = [r for r in records if r.get("status") == "skipped"]
    rows = sorted((r for r in records if r.get("status") != "skipped"), key=lambda r: order.get(r.get("status"), 2))
    measured = [r for r in rows if r.get("status") in ("ok", "built")]
    for r in rows:
        why = "; ".join(failing.get(r["variant_id"], []))
        r["verdict"] = ("fail: " + why)[:70] if why else "pass" if r.get("status") == "ok" else ""
    keep = [c for c in cols[2:] if any(cell(r.get(c)) not in ("-", "nan", "") for r in measured)]
    if len(measured) < len(rows):
        keep.append("reason")
        for r in rows:
            r["reason"] = "" if r in measured else str(r.get("skip_reason") or r.get("error") or "")[:90]
    out = table(rows, cols[:2] + keep) if rows else "no variant ran"
    if skipped:
        reasons = Counter(str(r.get("skip_reason") or r.get("error") or "no reason given") for r in skipped)
        out += f"\n{len(skipped)} skipped: " + "; ".join(f"{n} x {why[:90]}" for why, n in reasons.most_common()) \
            + " (`optbench plan` lists them)"
    return out


def _serving_table(df) -> str:
    """The serving measurements of a run (its spec's ``serving:``), one line per LoadGen run: scenario, batching,
    target and achieved QPS, p50 and p99 under load, LoadGen's validity word; then each peak search's QPS at the p99
    bound. A row whose serving failed says why in one line. Empty where no row served."""
    lines, rows, bounds = [], [], set()
    for r in df.to_dict("records") if "serving" in df.columns else []:
        s = r.get("serving")
        if not isinstance(s, dict):
            continue
        if s.get("error"):
            lines.append(f"{r['variant_id']}: serving failed: {str(s['error']).splitlines()[0][:120]}")
        bounds.add(s.get("p99_bound_ms"))
        rows += [{"variant_id": r["variant_id"], "batching": x.get("batching"), "scenario": x.get("scenario"),
                  "target_qps": x.get("target_qps"), "achieved_qps": x.get("achieved_qps"), "p50_ms": x.get("p50_ms"),
                  "p99_ms": x.get("p99_ms"), "validity": x.get("validity")} for x in s.get("runs") or []]
        rows += [{"variant_id": r["variant_id"], "batching": p.get("batching"), "scenario": "peak at bound",
                  "target_qps": p.get("qps"), "achieved_qps": p.get("achieved_qps"), "p50_ms": None,
                  "p99_ms": p.get("p99_ms"), "validity": p.get("validity") or (p.get("note") or "none met it")[:40]}
                 for p in s.get("peak") or []]
    if not rows and not lines:
        return ""
    bound = ", ".join(f"{b:g} ms" for b in sorted(b for b in bounds if b is not None)) or "none"
    cols = ["variant_id", "batching", "scenario", "target_qps", "achieved_qps", "p50_ms", "p99_ms", "validity"]
    return "\n".join([f"serving (MLPerf LoadGen; p99 bound {bound}; latencies under load, QPS in items/s):"] +
                      ([table(rows, cols)] if rows else []) + lines)


def _sweep_options(args: argparse.Namespace, spec, mode: str, spec_path: Path):
    """RunOptions of `run` and `build` from their shared arguments (a new run directory is named after the spec,
    `-build` for builds, and the time)."""
    from optbench.run.sweep import RunOptions

    if args.max_variants is not None and args.max_variants < 1:
        raise OptbenchError(f"--max-variants takes how many planned variants may run, at least 1; found "
                            f"{args.max_variants}")
    stamp = clock.stamp("%Y%m%d-%H%M%S")
    run_dir = Path(args.run_dir) if args.run_dir else \
        Path(args.out) / f"{spec.name}{'-build' if mode == 'build' else ''}-{stamp}"
    return RunOptions(run_dir=run_dir, spec_path=spec_path, force=args.force, resume=args.resume,
                      cache_dir=Path(args.cache_dir) if args.cache_dir else None, no_cache=args.no_cache,
                      quiet=args.quiet, mode=mode, history=args.history_db, no_history=args.no_history,
                      **_executor_options(args),
                      **({"max_variants": args.max_variants} if args.max_variants is not None else {}))


def _sweep_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """The arguments `run` and `build` share: the spec, where the rows go, resume/force, the cache, the executor."""
    build = what == "build"
    parser.add_argument("spec", help="a spec file (YAML), or a model file for a spec-less run: .onnx, .tflite, "
                                     "TorchScript .pt/.jit, .pt2, a SavedModel folder, a frozen .pb, an OpenVINO .xml")
    parser.add_argument("--set", action="append", metavar="KEY.PATH=VALUE",
                        help="override a spec value, read as YAML (repeatable): --set measure.rounds=3, "
                             "--set variants.batch_size=[1,8]")
    _quick_arguments(parser)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--run-dir", help="run directory for the build rows (default: OUT/NAME-build-TIMESTAMP)" if build
                       else "run directory (default: OUT/NAME-TIMESTAMP)")
    where.add_argument("--out", default="results", help="root of new run directories (default: results)")
    parser.add_argument("--force", action="store_true", help="overwrite a run directory that holds results")
    parser.add_argument("--resume", action="store_true", help=f"{what} only the variants without a final row")
    parser.add_argument("--cache-dir", help="artifact cache (default: $OPTBENCH_CACHE or ~/.cache/optbench)")
    parser.add_argument("--no-cache", action="store_true", help="rebuild every artifact")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    parser.add_argument("--no-history", action="store_true",
                        help="keep this run out of the run history (or OPTBENCH_HISTORY=off)")
    parser.add_argument("--history-db", metavar="PATH|URL",
                        help="the history database: an SQLite file or an SQLAlchemy URL (default: $OPTBENCH_HISTORY, "
                             "else ~/.local/share/optbench/history.sqlite)")
    parser.add_argument("--max-variants", type=int, default=None, metavar="N",
                        help="run a sweep of more than 500 planned variants (the default refuses, naming the count)")
    _executor_arguments(parser)


def _quick_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of a spec-less `run`, `build` or `plan` of a model file."""
    quick = parser.add_argument_group("spec-less use of a model file (optbench run model.tflite ...)")
    quick.add_argument("--precision", metavar="LIST", help="precisions, e.g. fp32,fp16,int8 (default: all three)")
    quick.add_argument("--batch", metavar="LIST", help="batch sizes, e.g. 1,8 (default: 1)")
    quick.add_argument("--backend", metavar="LIST", help="backends, e.g. onnxruntime,openvino (default: the "
                                                         "model's own framework and onnxruntime where it converts)")
    quick.add_argument("--shapes", metavar="SYM=SIZE,...", help="sizes of the model's symbolic dims other than the "
                                                                "batch, e.g. height=640,width=640")
    quick.add_argument("--input", action="append", metavar="NAME=DIMS[:DTYPE]",
                       help="an input's shape where the file records none (TorchScript), e.g. --input "
                            "image=batch,1,8,8 (repeatable)")
    quick.add_argument("--outputs", metavar="LIST", help="a frozen graph's output tensors, e.g. scores:0,boxes:0 "
                                                         "(default: the graph's one terminal node's outputs)")
    quick.add_argument("--data", metavar="FILE.npz", help="inputs, one array per input name, items first "
                                                          "(default: random inputs, and int8 rows say so)")
    quick.add_argument("--labels", metavar="NAME", help="the array of --data holding labels")


def _executor_options(args: argparse.Namespace) -> dict:
    """--executor, --address, --jobs checked before anything runs."""
    if args.jobs < 1:
        raise OptbenchError(f"--jobs takes a positive number of variants in flight, found {args.jobs}")
    if args.address and args.executor != "ray":
        raise OptbenchError("--address is a Ray cluster's address: give it with --executor ray")
    if args.address:
        import re

        if args.address != "auto" and not re.fullmatch(r"(ray://)?[A-Za-z0-9.\-\[\]:]+:\d{1,5}", args.address):
            raise OptbenchError(f"--address {args.address!r} is not a Ray cluster address: HOST:PORT (e.g. "
                                f"10.0.0.5:6379), ray://HOST:PORT, or auto")
    if args.executor == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise OptbenchError("--executor ray needs Ray: pip install -e '.[ray]'")
        if args.jobs != 1:
            raise OptbenchError("--jobs is for the local executor; on Ray the cluster's CPUs and GPUs decide")
    return {"jobs": args.jobs, "executor": args.executor, "address": args.address, "gpus": _gpus_option(args.gpus)}


def _gpus_option(text: str | None) -> list[str] | None:
    """--gpus: None for every visible GPU (the default), else the listed physical indices."""
    if text is None or text.strip() == "all":
        return None
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise OptbenchError(f"--gpus takes 'all' or distinct GPU indices separated by commas (e.g. 0,1), found "
                            f"{text!r}")
    from optbench.env import gpu_info

    have = len(gpu_info())
    if missing := [p for p in parts if int(p) >= have]:
        raise OptbenchError(f"--gpus {text}: no GPU {', '.join(missing)} on this machine (it has "
                            f"{have or 'none'}{'' if have else ': nvidia-smi lists no GPU'})")
    return parts


def _executor_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="local: worker processes on this machine; ray: warm Ray runners over a cluster")
    parser.add_argument("--address", help="Ray cluster address HOST:PORT (default: start a local Ray instance)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="local executor: variants in flight at once; builds overlap, timing windows stay "
                             "exclusive (default 1)")
    parser.add_argument("--gpus", metavar="all|I,J", help="local executor: the GPUs CUDA variants spread over, two "
                                                         "in flight per GPU (one builds while the other times); "
                                                         "default all visible (--gpus 0: one at a time on GPU 0)")


def cmd_build(args: argparse.Namespace) -> int:
    """Build every variant's artifacts without measuring: ONNX exports, converted and quantized models, engines
    (rows with status ``built``, build seconds and bytes); the artifact cache keeps them for a later ``run``."""
    from optbench.cache import ArtifactCache
    from optbench.run.sweep import run_sweep
    from optbench.store import load_results

    with _spec_of(args) as (spec, spec_path):
        opts = _sweep_options(args, spec, "build", spec_path)
        run_sweep(spec, opts)
    run_dir = opts.run_dir
    df = load_results(run_dir)
    df["model_MiB"] = df["model_bytes"].map(lambda b: round(b / 2**20, 3) if b == b and b is not None else None)
    cols = ["variant_id", "status", "build_s", "export_s", "model_MiB", "error"]
    df["error"] = df["error"].map(lambda e: (str(e).splitlines()[0][:90]) if isinstance(e, str) else "")
    print(table(df[cols].to_dict("records"), cols))
    built = int((df["status"] == "built").sum())
    print(f"\n{built} built, {int((df['status'] == 'skipped').sum())} skipped, "
          f"{int(df['status'].isin(['failed', 'timeout']).sum())} failed; artifacts in {ArtifactCache(opts.cache_dir).root}")
    print(f"run directory: {run_dir}")
    return 0


def _print_decisions(run_dir: Path, args: argparse.Namespace) -> None:
    from optbench.report.build import load_run
    from optbench.report.render import summary_lines

    run = load_run(run_dir)
    run["constraints"] = list(args.constraint or [])
    print("\nwhat to ship:")
    for line in summary_lines(run):
        print(f"  {line}")


def _maybe_report(run_dir: Path, args: argparse.Namespace) -> None:
    if not args.no_report:
        from optbench.report.render import write_report

        explain = not getattr(args, "no_explain", False)
        say = None if getattr(args, "quiet", False) else progress
        print(f"report: {write_report(run_dir, constraints=args.constraint or [], explain=explain, say=say)}")



def add_commands(sub) -> None:
    r = sub.add_parser("run", help="build and measure every variant of a spec")
    _sweep_arguments(r, "run")
    r.add_argument("--constraint", action="append", metavar="'COLUMN OP NUMBER'",
                   help="a deployment constraint for the recommendation, e.g. 'latency_ms_p99 <= 5' (repeatable)")
    r.add_argument("--no-report", action="store_true", help="do not write report.html")
    r.add_argument("--no-explain", action="store_true",
                   help="the report explains no variant (each explanation runs two graphs on a few eval items); "
                        "`optbench explain` or `optbench report` explain them later")
    r.set_defaults(fn=cmd_run)

    b = sub.add_parser("build", help="build every variant's artifacts (ONNX, converted, quantized, engines); "
                                     "measure nothing")
    _sweep_arguments(b, "build")
    b.set_defaults(fn=cmd_build)

    pl = sub.add_parser("plan", help="how optbench reads the model, and the variants of a spec; build nothing")
    pl.add_argument("spec", help="a spec file (YAML), or a model file (as for run)")
    pl.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a spec value (as for run)")
    pl.add_argument("--json", action="store_true")
    _quick_arguments(pl)
    pl.set_defaults(fn=cmd_plan)
