"""Drift along the graph: a variant's per-node error against the reference by depth, the nodes that introduce
the most marked and named; and the report's section for failed or marginal variants (explained on the run's eval
items where no explanation is kept yet)."""

from __future__ import annotations

from pathlib import Path

import optbench.report.plots as plots
from optbench.report.plots import WIDTH_IN, plt

TOP = 8          # offenders named in the plot and the report's table
MARGINAL = 0.05  # a passing variant within this fraction of a budget is marginal, and explained too
EXPLAIN_AT_MOST = 3  # variants the report explains on its own (each runs two graphs on a few items)


def drift_figure(loc, top: int = TOP):
    """Above, each compared node's output error (rel. L2, log scale) at its depth; below, the error each node
    introduces. The ``top`` nodes that introduce the most are numbered on both and named beside them."""
    nodes = [d for d in loc.nodes if d.error > 0]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(WIDTH_IN, 5.6), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 2], "right": 0.66, "hspace": 0.08})
    if not nodes:
        ax.text(0.5, 0.5, "no node differs from the reference", ha="center", transform=ax.transAxes)
        return fig
    worst = [d for d in loc.ranked(top) if d.introduced > 0]
    ax.scatter([d.depth for d in nodes], [d.error for d in nodes], s=10, color="#4363d8", alpha=0.55)
    ax.scatter([d.depth for d in worst], [d.error for d in worst], s=36, color="#e6194b")
    ax.set_yscale("log")
    ax.set_ylabel("output error\n(rel. L2 vs reference)")
    ax2.vlines([d.depth for d in loc.nodes], 0, [d.introduced for d in loc.nodes], color="#4363d8", alpha=0.55,
               linewidth=1)
    ax2.scatter([d.depth for d in worst], [d.introduced for d in worst], s=30, color="#e6194b", zorder=3)
    ax2.axhline(0, color="#999", linewidth=0.6)
    ax2.set_ylabel("error introduced\n(output − inputs)")
    ax2.set_xlabel("depth in the graph (compute nodes from the input)")
    for i, d in enumerate(worst):
        for a, y in ((ax, d.error), (ax2, d.introduced)):
            a.annotate(str(i + 1), (d.depth, y), fontsize=8, xytext=(3, 3), textcoords="offset points",
                       color="#800000", weight="bold")
    names = "\n".join(f"{i + 1}. {_short(d.node, 44)}  (+{d.introduced:.3g})" for i, d in enumerate(worst))
    fig.text(0.68, 0.88, f"introduce the most drift:\n{names}", fontsize=8, va="top", family="monospace")
    return fig


def _short(name: str, width: int = 38) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1):]


def drift_uri(loc, top: int = TOP) -> str:
    return plots._uri(drift_figure(loc, top))


def write_drift_plot(loc, path: Path, top: int = TOP) -> Path:
    """The plot as a file (SVG or PNG by its suffix)."""
    fig = drift_figure(loc, top)
    fig.savefig(str(path), bbox_inches="tight", metadata={"Date": None} if str(path).endswith(".svg") else None)
    plt.close(fig)
    return Path(path)


def marginal(results: list) -> bool:
    """Whether a passing variant's tightest budget holds by less than MARGINAL of it."""
    margins = [r.margin for r in results if r.margin is not None]
    return bool(margins) and min(margins) < MARGINAL


def to_explain(run: dict, df, failing: dict[str, list[str]]) -> list[str]:
    """The variants the report explains: failed accuracy checks first, then marginal passes; only those with a
    converted graph (or module) to compare, at most EXPLAIN_AT_MOST not explained yet."""
    from optbench.check import budget_for, check_accuracy, noise_floor, output_budgets
    from optbench.report.build import reference_of

    ok = df[(df.status == "ok") & (df.precision != "fp32")]
    rows = ok.to_dict("records")
    noise = noise_floor(df.to_dict("records"), reference_of(run))
    close = []
    for r in rows:
        if r["variant_id"] in failing:
            continue
        res = check_accuracy(r, budget_for(r, run["spec"].get("budgets") or {}, {}), noise,
                             run["ref"].get("reference_task_accuracy"), output_budgets(run["spec"]))
        if marginal(res):
            close.append(r["variant_id"])
    return [r["variant_id"] for r in rows if r["variant_id"] in failing] + close


def section(run: dict, df, failing: dict[str, list[str]], compute: bool = True) -> list[dict]:
    """Per explained variant: why it is here, the top offenders, the plot. Explanations kept in the run directory
    are read; up to EXPLAIN_AT_MOST others are computed (``compute``) and kept."""
    from optbench.errors import OptbenchError
    from optbench.explain.variant import explain_variant, load_explained

    out, computed, asked = [], 0, compute
    work = Path(run["dir"]) / "work"
    compute = compute and (work / "prepare.json").exists() and (work / "data.npz").exists()
    for vid in to_explain(run, df, failing):
        loc = load_explained(run["dir"], vid)
        if loc is None and compute and computed < EXPLAIN_AT_MOST:
            if say := run.get("say"):
                say(f"explaining {vid}: its graph and the fp32 graph on a few items (--no-explain skips this)")
            try:
                loc = explain_variant(run["dir"], vid)
                computed += 1
            except Exception as e:  # an explanation never stops a report: the variant says why it is not explained
                text = (str(e).strip().splitlines() or [""])[0][:300]
                out.append({"variant": vid, "why": _why(vid, failing),
                            "error": text if isinstance(e, OptbenchError) else f"{e.__class__.__name__}: {text}"})
                continue
        if loc is None:
            if not asked:
                out.append({"variant": vid, "why": _why(vid, failing),
                            "error": "not explained: the report was asked to explain nothing (--no-explain); "
                                     f"`optbench explain {run['dir']} {vid}` explains it"})
            continue
        out.append({"variant": vid, "why": _why(vid, failing), "n_items": loc.items, "uri": drift_uri(loc),
                    "reproduction": loc.reproduction.sentence() if loc.reproduction is not None else
                    "not checked against the row (explained before optbench checked it)",
                    "reproduced": loc.reproduced,
                    "top": [{"rank": i + 1, "node": d.node, "op": d.op_type, "module": d.module or "",
                             "introduced": d.introduced, "error": d.error, "depth": d.depth}
                            for i, d in enumerate(loc.ranked(TOP))],
                    "notes": loc.notes})
    return out


def _why(vid: str, failing: dict[str, list[str]]) -> str:
    return ("fails: " + "; ".join(failing[vid])[:300]) if vid in failing else \
        f"passes within {MARGINAL:.0%} of a budget"
