"""Explain one variant of a run: its graph against the fp32 graph it was converted from (or, for a torch-side
variant, its module against the reference module), on a few of the run's eval items at the variant's point; the
result is kept in the run directory (``explain/<variant>.json``) for the report and for ``optbench tune``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from optbench.errors import OptbenchError, RunDirError
from optbench.explain.localize import Localization

ITEMS = 8  # eval items explained by default: enough to rank the nodes, a few seconds on a small detector


def explain_file(run_dir: Path, variant_id: str) -> Path:
    return Path(run_dir) / "explain" / f"{variant_id}.json"


def load_explained(run_dir: Path, variant_id: str) -> Localization | None:
    path = explain_file(run_dir, variant_id)
    return Localization.from_json(json.loads(path.read_text())) if path.exists() else None


def resolve_variant(run_dir: Path, given: str) -> str:
    """The variant id ``given`` names: itself, or the one id of the run that holds it (its hash, a hash prefix, the
    id without its hash); several that hold it are one line listing them. An unknown one is left to :func:`row_of`."""
    from optbench.store import final_rows

    if not (Path(run_dir) / "results.jsonl").exists():
        raise RunDirError(f"{run_dir} holds no results.jsonl; is it a run directory?")
    rows = final_rows(Path(run_dir))
    if given in rows or not given:
        return given
    hits = [v for v in rows if given in v]
    if len(hits) > 1:
        raise OptbenchError(f"'{given}' names {len(hits)} variants of {run_dir}: {', '.join(sorted(hits)[:6])}"
                            + (", ..." if len(hits) > 6 else ""), expected="a part of one variant id only (its hash)")
    return hits[0] if hits else given


def row_of(run_dir: Path, variant_id: str) -> dict:
    """The variant's final row (``variant_id`` may be any unique part of the id); a missing one is one clear line
    naming the nearest ids."""
    import difflib

    from optbench.store import final_rows

    variant_id = resolve_variant(run_dir, variant_id)
    rows = final_rows(Path(run_dir))
    if variant_id not in rows:
        near = difflib.get_close_matches(variant_id, list(rows), n=2, cutoff=0.4)
        raise OptbenchError(f"{run_dir} has no variant '{variant_id}'" + (f"; did you mean {' or '.join(near)}?"
                                                                        if near else ""),
                            expected=f"one of its {len(rows)} variant ids (`optbench report` lists them)")
    return rows[variant_id]


def explain_variant(run_dir: Path, variant_id: str, items: int = ITEMS, seed: int = 0,
                    save: bool = True) -> Localization:
    """Where the variant's drift comes from (see :mod:`optbench.explain.localize`), and whether what was run to
    find out reproduces the row's drift (``reproduction``). A variant whose artifact explain cannot read is one
    clear line saying why."""
    run_dir = Path(run_dir)
    row = row_of(run_dir, variant_id)
    if row.get("status") in ("skipped", None):
        raise OptbenchError(f"variant '{variant_id}' was skipped ({row.get('error')}): nothing was built to explain")
    how = readable(run_dir, row)
    batches = _batches(run_dir, row, items, seed)
    if how == "onnx":
        loc = _explain_onnx(run_dir, row, batches)
    else:
        from optbench.explain.torch_hooks import explain_module

        loc = explain_module(run_dir, row, batches)
    if save:
        path = explain_file(run_dir, variant_id)
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(loc.to_json(), default=float))
    return loc


def readable(run_dir: Path, row: dict) -> str:
    """How the variant is explained: "onnx" (its ONNX graph against the fp32 graph, on ONNX Runtime) or "module"
    (its torch module's leaf modules hooked); a variant neither reaches is one line saying why."""
    from optbench.backends import get_backend

    name = row.get("backend_name") or row["backend"]
    try:
        cls = get_backend(name)
    except Exception as e:  # a backend this install does not know
        raise OptbenchError(f"variant '{row['variant_id']}' ran on backend '{name}', which this optbench does not "
                            f"know ({str(e).splitlines()[0][:160]}): not explained") from None
    artifact = str(row.get("artifact") or "")
    native = _prepared(run_dir).get("native") or {}
    as_given = bool(artifact) and artifact == native.get("path")
    if cls.explained == "onnx" and artifact.endswith(".onnx") and not as_given:
        if row.get("precision") == "fp32" or (row.get("settings") or {}).get("source_onnx"):
            return "onnx"
        what = (f"its {row.get('precision')} model is made by {cls.name} itself from the fp32 ONNX graph (the ONNX "
                "file it consumed holds fp32)")
    elif cls.explained == "module" and not artifact:
        return "module"
    elif as_given:
        what = f"it ran the {native.get('framework')} model file as given ({Path(artifact).name})"
    elif (row.get("settings") or {}).get("built_from"):
        what = (f"its {row.get('precision')} model ({Path(artifact).name}) is made by {cls.name} itself from "
                f"{Path(row['settings']['built_from']).name}")
    elif cls.consumes == "torch":
        what = f"it ran a program {cls.name} makes from the torch module"
    else:
        what = f"it ran {Path(artifact).name or 'no recorded model file'}"
    raise OptbenchError(f"variant '{row['variant_id']}' ({cls.name}): {what}; optbench explain reads ONNX graphs "
                        "(on ONNX Runtime) and torch modules (forward hooks), so it does not explain this variant")


def _explain_onnx(run_dir: Path, row: dict, batches: list) -> Localization:
    from optbench.backends import get_backend
    from optbench.explain.localize import localize
    from optbench.explain.reproduce import reproduce

    variant = Path(row["artifact"])
    reference = _reference_graph(run_dir, row)
    for what, p in (("the variant's graph", variant), ("the fp32 graph it was converted from", reference)):
        if not p.exists():
            raise OptbenchError(f"{what} ({p}) is no longer in the artifact cache; run the variant again "
                                f"(`optbench run SPEC --run-dir {run_dir} --resume` after removing its row, or a new run)")
    settings = row.get("settings") or {}
    same = get_backend(row.get("backend_name") or row["backend"]).reference_for == "onnx" and row.get("device") == "cpu"
    level = settings.get("graph_optimization", "all") if same else "all"
    loc = localize(reference, variant, batches, level=level,
                   check=lambda infer, changed: reproduce(run_dir, row, infer, changed))
    if not same:
        loc.notes.insert(0, f"explained on ONNX Runtime's CPU kernels; the row ran on {row['backend']} "
                            f"({row.get('device')})")
    return loc


def _reference_graph(run_dir: Path, row: dict) -> Path:
    """The fp32 graph the variant's was converted from (recorded in its row), the model file for an fp32 variant of
    an ONNX model, or the fp32 export of the same transform for an fp32 variant of a torch model."""
    settings = row.get("settings") or {}
    if settings.get("source_onnx"):
        return Path(settings["source_onnx"])
    prepared = _prepared(run_dir)
    if row.get("precision") == "fp32":
        if prepared.get("model_format") is None:  # an ONNX model: the file itself
            return Path(prepared["model_path"])
        return Path(row["artifact"])  # the fp32 export is its own reference: ranks show the ONNX conversion only
    raise OptbenchError(f"the row of '{row['variant_id']}' does not record the fp32 graph it was converted from "
                        "(rows made before optbench explain); run the variant again to explain it")


def _prepared(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "work" / "prepare.json"
    if not path.exists():
        raise RunDirError(f"{run_dir} keeps no preparation (work/prepare.json): its data and reference are gone")
    return json.loads(path.read_text())


def _batches(run_dir: Path, row: dict, items: int, seed: int) -> list[tuple[dict[str, np.ndarray], int]]:
    """``items`` eval items (chosen by ``seed``) at the variant's point, in the model's layout, in batches of the
    variant's size (or the batch the model fixes)."""
    import yaml

    from optbench.data import feeds_of
    from optbench.run.context import load_splits_file
    from optbench.specfile.load import validate

    if items < 1:
        raise OptbenchError(f"--items takes a positive number of eval items, found {items}")
    spec = validate(yaml.safe_load((run_dir / "spec.yaml").read_text()), {}, str(run_dir / "spec.yaml"))
    splits = load_splits_file(run_dir / "work" / "data.npz")
    splits.eval.feed = feeds_of(spec.inputs)
    at = splits.eval.at_shape(spec.inputs, dict(row.get("shape") or {}))
    n = min(items, len(at))
    pick = np.sort(np.random.default_rng(seed).choice(len(at), size=n, replace=False))
    batch = int(row.get("batch_size") or 1)
    read = str((_prepared(run_dir).get("interpretation") or {}).get("batch", "dynamic"))
    if read.startswith("fixed"):
        batch = int(read.split()[1])
    elif not any(i.batch_axis is not None for i in spec.inputs):
        batch = 1
    return list(at.take(pick).batches(min(batch, n) if not read.startswith("fixed") else batch))
