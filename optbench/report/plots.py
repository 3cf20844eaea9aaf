"""Plots of a run, each returned as a base64 SVG data URI (self-contained, no script, nothing to inject).

Drawn for a 1200 px wide page: legends outside the axes, one colour per series kept across every plot (20
colours that stay apart, so a dozen series never share one), a marker per batch size.
"""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams.update({"svg.fonttype": "path", "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3,
                     "font.size": 10, "svg.hashsalt": "optbench"})

# 20 colours that stay apart (the strong ones first, so a dozen series never need the pale four)
PALETTE = ["#4363d8", "#e6194b", "#3cb44b", "#f58231", "#911eb4", "#42d4f4", "#f032e6", "#9a6324", "#469990",
           "#800000", "#808000", "#000075", "#000000", "#a9a9a9", "#c7a600", "#7fbf00", "#ff7f7f", "#b59ddb",
           "#2f4f4f", "#d2691e"]
MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
WIDTH_IN = 11.5  # inches at 100 dpi: the figure plus its outside legend fits a 1200 px page


def _uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def series_label(row) -> str:
    t = "" if row["transform"] == "none" else f" [{row['transform']}]"
    q = f"-{row['int8_label']}" if row.get("int8_label") else ""
    return f"{row['backend']} {row['precision']}{q}{t}"


def colours(labels) -> dict[str, str]:
    """A colour per series, in sorted order, the same in every plot of a report."""
    names = sorted(set(labels))
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(names)}


def markers(batches) -> dict[int, str]:
    return {b: MARKERS[i % len(MARKERS)] for i, b in enumerate(sorted(set(int(x) for x in batches)))}


def _plain_x(ax, ticks=None) -> None:
    """Log x axis labelled in plain numbers (0.1, 1, 10), no minor labels to overlap: at ``ticks`` where given
    (the batch sizes run), else at 1-2-5 steps where the data spans less than two decades (a panel between
    two decades still gets labels), else at the decades."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

    plain = FuncFormatter(lambda v, _: f"{v:g}")
    if ticks is not None:
        ax.xaxis.set_major_locator(FixedLocator(sorted(set(ticks))))
        ax.xaxis.set_minor_locator(NullLocator())
    else:
        lo, hi = ax.get_xlim()
        if lo > 0 and hi / lo < 100:
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(NullFormatter())


def _legend_outside(ax, **kw) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, **kw)


HATCHES = ["////", "\\\\\\\\", "||||", "----", "xxxx", "....", "++++", "oooo"]


def _batch_legend(ax, series: list[str], colour: dict[str, str], mark: dict[int, str], *extra) -> None:
    """The legend outside the axes: a colour per series, a grey marker per batch size, then ``extra`` handles."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colour[s], marker="o", label=s) for s in series]
    handles += [Line2D([], [], color="grey", marker=m, ls="", label=f"batch {b}") for b, m in mark.items()]
    ax.legend(handles=handles + list(extra), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False)


def latency_vs_batch(ok: pd.DataFrame, colour: dict[str, str]) -> str | None:
    """p50 against batch size, a line per series, and each series' p90-p99 band: pale, hatched in its own pattern
    and edged with its p99 as a dotted line, so overlapping bands stay apart."""
    from matplotlib.colors import to_rgba
    from matplotlib.lines import Line2D

    if ok["batch_size"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH_IN * 0.75, 4.5))
    mark = markers(ok["batch_size"])
    series = sorted(ok["series"].unique())
    for i, label in enumerate(series):
        g = ok[ok["series"] == label].groupby("batch_size").median(numeric_only=True).sort_index()
        c = colour[label]
        ax.plot(g.index, g["latency_ms_p50"], color=c, zorder=3)
        for b, r in g.iterrows():
            ax.plot([b], [r["latency_ms_p50"]], marker=mark[int(b)], color=c, ls="", zorder=3)
        if g[["latency_ms_p90", "latency_ms_p99"]].notna().all(axis=None):
            ax.fill_between(g.index, g["latency_ms_p90"], g["latency_ms_p99"], facecolor=to_rgba(c, 0.06),
                            edgecolor=to_rgba(c, 0.45), hatch=HATCHES[i % len(HATCHES)], linewidth=0, zorder=1)
            ax.plot(g.index, g["latency_ms_p99"], color=c, ls=":", lw=1, zorder=2)
    ax.set(xscale="log", yscale="log", xlabel="batch size (items)",
           ylabel="latency (ms): p50 line; p90–p99 band, p99 dotted", title="Latency vs batch size")
    _plain_x(ax, ticks=[int(b) for b in ok["batch_size"].unique()])
    _batch_legend(ax, series, colour, mark, Line2D([], [], color="grey", ls=":", lw=1, label="p99 (band from p90)"))
    return _uri(fig)


def throughput_vs_latency(ok: pd.DataFrame, colour: dict[str, str]) -> str | None:
    """Throughput against latency across batch sizes, a line per series (the Model Analyzer view): the knee is
    where a larger batch buys little throughput for much latency. Batch sizes are told by marker, in the legend:
    a text label per point overlapped where series meet at one batch size."""
    if ok["batch_size"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH_IN * 0.75, 5))
    mark = markers(ok["batch_size"])
    series = sorted(ok["series"].unique())
    for label in series:
        g = ok[ok["series"] == label].groupby("batch_size").median(numeric_only=True).sort_index()
        ax.plot(g["latency_ms_p50"], g["throughput_items_s"], color=colour[label])
        for b, r in g.iterrows():
            ax.plot([r["latency_ms_p50"]], [r["throughput_items_s"]], marker=mark[int(b)], color=colour[label],
                    ls="")
    ax.set(xscale="log", yscale="log", xlabel="latency p50 (ms)", ylabel="throughput (items/s)",
           title="Throughput vs latency across batch sizes")
    _plain_x(ax)
    _batch_legend(ax, series, colour, mark)
    return _uri(fig)


def pareto_metric(ok: pd.DataFrame, metric: str) -> tuple[str, bool, str]:
    """(column, higher is better, axis label): the accuracy metric, or where it is flat across the variants
    (top-1 agreement saturated at 1.0) the relative L2 drift on a log axis, which still tells them apart."""
    values = ok[metric].dropna() if metric in ok else pd.Series(dtype=float)
    if len(values) and values.max() - values.min() > 1e-6:
        return metric, True, metric.replace("_", " ")
    return "drift_rel_l2", False, f"rel. L2 drift vs reference (log; lower is better; {metric} flat)"


DRIFT_STEP = 0.8  # on the drift axis a slower variant joins the frontier only below 0.8x the drift so far


def frontier_of(d: pd.DataFrame, column: str, higher: bool) -> pd.DataFrame:
    """Rows no other row beats on both latency per item (lower) and ``column``. On the drift axis (lower is
    better, log) a slower row must cut the drift to below DRIFT_STEP of the best so far: drifts of 4.9e-7 and
    5.3e-7 are the same rounding noise, and a frontier through both would claim a trade that is not there."""
    d = d.dropna(subset=[column, "ms_per_item"]).sort_values(["ms_per_item", column], ascending=[True, not higher])
    keep, best = [], math.inf
    for idx, r in d.iterrows():
        value = r[column]
        better = (not keep or value > best) if higher else value < best * DRIFT_STEP or (not keep and value <= best)
        if better:
            keep.append(idx)
            best = value
    return d.loc[keep]


def pareto(ok: pd.DataFrame, passing: pd.DataFrame, metric: str, colour: dict[str, str], shape: str) -> str | None:
    """Accuracy against latency per item at one shape, a panel per batch size (a point of the decision): the
    frontier of the variants that pass every check drawn and labelled; markers tell batch sizes apart."""
    column, higher, label = pareto_metric(ok, metric)
    d = ok.dropna(subset=[column, "ms_per_item"])
    if d.empty:
        return None
    floor = None
    if not higher:  # zeros (the reference runtime's own fp32) cannot sit on a log axis: drawn at a floor
        positive = d[column][d[column] > 0]
        floor = (positive.min() / 10) if len(positive) else 1e-9
        d = d.assign(**{column: d[column].clip(lower=floor)})
    mark = markers(d["batch_size"])
    batches = sorted(mark)
    cols = 2 if len(batches) > 1 else 1
    rows = math.ceil(len(batches) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(WIDTH_IN * (0.85 if cols > 1 else 0.7), 4.2 * rows), squeeze=False,
                             sharey=True)
    for ax, b in zip(axes.flat, batches):
        g = d[d["batch_size"] == b]
        for series, s in g.groupby("series"):
            ax.scatter(s["ms_per_item"], s[column], color=colour[series], marker=mark[b], s=40, zorder=3)
        f = frontier_of(g[g["variant_id"].isin(passing["variant_id"])], column, higher).sort_values("ms_per_item")
        if not f.empty:
            ax.step(f["ms_per_item"], f[column], where="post", color="black", lw=1, alpha=0.6, zorder=2)
            for i, (_, r) in enumerate(f.iterrows()):
                ax.annotate(r["series"], (r["ms_per_item"], r[column]), textcoords="offset points",
                            xytext=(6, 6 + 9 * (i % 2)), fontsize=7)
        ax.set(xscale="log", title=f"batch {b}" + (f", {shape}" if shape not in ("", "-") else ""),
               xlabel="latency p50 per item (ms)")
        _plain_x(ax)
        if not higher:
            ax.set_yscale("log")
            if floor is not None and (ok[column] == 0).any():
                ax.axhline(floor, color="grey", lw=0.5, ls=":")
    for ax in list(axes.flat)[len(batches):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(label if len(label) < 40 else label.replace(" (", "\n("))
    first = axes.flat[0]
    if not higher:
        first.invert_yaxis()  # better is up on every Pareto plot (the axes share y)
    elif d[column].between(0, 1).all():
        lo = d[column].min()
        first.set_ylim(max(0.0, lo - (1 - lo) * 0.1 - 1e-3), 1.0 + (1 - lo) * 0.05 + 1e-4)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=colour[s], marker="o", ls="", label=s) for s in sorted(d["series"].unique())]
    handles += [Line2D([], [], color="grey", marker=m, ls="", label=f"batch {b}") for b, m in mark.items()]
    handles.append(Line2D([], [], color="black", lw=1, label="Pareto frontier (passing variants)"))
    if floor is not None and (ok[column] == 0).any():
        handles.append(Line2D([], [], color="grey", lw=0.5, ls=":", label="exact (0) drawn here"))
    axes.flat[cols - 1].legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
                               frameon=False)
    fig.suptitle("Accuracy vs latency" + (f" at {shape}" if shape not in ("", "-") else ""))
    fig.tight_layout()
    return _uri(fig)


def memory_bars(ok: pd.DataFrame) -> str | None:
    """Grouped bars per variant: host RSS above the worker's once the artifact was ready (the session and its run,
    not the libraries every worker imports nor the artifact's export and calibration) and GPU peak."""
    rss = ok["rss_delta_bytes"] if "rss_delta_bytes" in ok and ok["rss_delta_bytes"].notna().any() else None
    d = ok.assign(_rss=(rss if rss is not None else ok["peak_rss_bytes"]) / 2**20,
                  _gpu=ok["gpu_peak_bytes"] / 2**20 if "gpu_peak_bytes" in ok else np.nan)
    d = d.dropna(subset=["_rss"]).sort_values("variant_id")
    if d.empty:
        return None
    has_gpu = d["_gpu"].notna().any()
    y = np.arange(len(d))
    h = 0.4 if has_gpu else 0.7
    fig, ax = plt.subplots(figsize=(WIDTH_IN * 0.75, 0.3 * len(d) * (2 if has_gpu else 1) / 1.4 + 1.5))
    rss_label = "host RSS Δ (above the worker once the artifact was ready)" if rss is not None else \
        "peak host RSS (whole process)"
    ax.barh(y - (h / 2 if has_gpu else 0), d["_rss"], height=h, color="#f58231", label=rss_label)
    if has_gpu:
        ax.barh(y + h / 2, d["_gpu"].fillna(0), height=h, color="#3cb44b", label="GPU peak")
    ax.set_yticks(y, d["variant_id"], fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel="MiB", title="Memory per variant (one process each)")
    _legend_outside(ax)
    return _uri(fig)


def latency_vs_shape(ok: pd.DataFrame, colour: dict[str, str]) -> str | None:
    if ok["shape_label"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH_IN * 0.75, 4.5))
    mark = markers(ok["batch_size"])
    for (label, bs), g in ok.groupby(["series", "batch_size"]):
        g = g.sort_values("shape_sort")
        ax.plot(g["shape_label"], g["latency_ms_p50"], marker=mark[int(bs)], label=f"{label} bs{bs}",
                color=colour[label])
    ax.set(yscale="log", xlabel="shape (dynamic dims)", ylabel="latency p50 (ms)", title="Latency vs shape")
    _legend_outside(ax)
    return _uri(fig)


def _serving(ok: pd.DataFrame, part: str) -> list[tuple[str, list[dict]]]:
    """(series label, entries of the rows' ``serving[part]``) per variant and batching engine."""
    out: dict[str, list[dict]] = {}
    for r in ok.to_dict("records"):
        s = r.get("serving")
        for e in (s.get(part) or []) if isinstance(s, dict) else []:
            out.setdefault(f"{r['variant_id']} ({e['batching']} batching)", []).append(e)
    return sorted(out.items())


def serving_load(ok: pd.DataFrame) -> str | None:
    """Two panels over the target QPS of LoadGen's server runs and the peak search's probes (its warm-up runs left
    out), a line per variant and engine: the p99 latency, the bound dashed (the knee is where it leaves the flat
    part), and the QPS achieved, the diagonal dotted (a point below it is a run the engine could not keep up with);
    INVALID runs (LoadGen's rules) hollow."""
    series = [(k, [e for e in v if e["scenario"] == "server" and e["p99_ms"]]) for k, v in _serving(ok, "runs")]
    probes = {k: [x for p in v for x in p["probes"] if x.get("role") != "warm-up"] for k, v in _serving(ok, "peak")}
    labels = sorted({k for k, v in series if v} | {k for k, v in probes.items() if v})
    if not labels:
        return None
    runs = dict(series)
    fig, (lat, got) = plt.subplots(1, 2, figsize=(WIDTH_IN * 0.85, 4.5))
    low, top = float("inf"), 0.0
    for i, label in enumerate(labels):
        pts = sorted({(e["target_qps"], e["achieved_qps"], e["p99_ms"], e["validity"] == "VALID")
                      for e in runs.get(label, []) + probes.get(label, [])
                      if e.get("target_qps") and e.get("achieved_qps") and e.get("p99_ms")})
        if not pts:
            continue
        c = PALETTE[i % len(PALETTE)]
        faces = [c if p[3] else "none" for p in pts]
        target = [p[0] for p in pts]
        low, top = min(low, *target, *(p[1] for p in pts)), max(top, *target, *(p[1] for p in pts))
        lat.plot(target, [p[2] for p in pts], color=c, lw=1, label=label)
        lat.scatter(target, [p[2] for p in pts], color=c, s=30, zorder=3, facecolors=faces)
        got.plot(target, [p[1] for p in pts], color=c, lw=1)
        got.scatter(target, [p[1] for p in pts], color=c, s=30, zorder=3, facecolors=faces)
    bounds = {e["p99_bound_ms"] for _, v in series for e in v if e.get("p99_bound_ms")} | \
        {p["p99_bound_ms"] for r in ok.to_dict("records") for p in ((r.get("serving") or {}).get("peak") or [])
         if isinstance(r.get("serving"), dict) and p.get("p99_bound_ms")}
    for b in bounds:
        lat.axhline(b, color="black", ls="--", lw=0.8, label=f"p99 bound {b:g} ms")
    if top:
        got.plot([low, top], [low, top], color="grey", ls=":", lw=0.8)
    lat.set(xscale="log", yscale="log", xlabel="target QPS (LoadGen server)", ylabel="p99 latency (ms)",
            title="p99 under load (hollow: INVALID)")
    got.set(xscale="log", yscale="log", xlabel="target QPS (LoadGen server)", ylabel="achieved QPS",
            title="achieved vs target QPS")
    _plain_x(lat)
    _plain_x(got)
    handles, names = lat.get_legend_handles_labels()  # one legend, outside the right panel
    got.legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.subplots_adjust(wspace=0.3)
    fig.suptitle("Serving: p99 latency and achieved QPS under load")
    return _uri(fig)


def serving_concurrency(ok: pd.DataFrame) -> str | None:
    """Throughput against p99 latency over the concurrency sweep (closed-loop clients), a line per variant and
    engine, each point labelled with its client count."""
    series = _serving(ok, "concurrency")
    if not series:
        return None
    fig, ax = plt.subplots(figsize=(WIDTH_IN * 0.75, 4.5))
    for i, (label, pts) in enumerate(series):
        pts = sorted(pts, key=lambda p: p["concurrency"])
        c = PALETTE[i % len(PALETTE)]
        ax.plot([p["p99_ms"] for p in pts], [p["throughput_items_s"] for p in pts], marker="o", color=c, label=label)
        for p in pts:
            ax.annotate(f"c{p['concurrency']}", (p["p99_ms"], p["throughput_items_s"]), textcoords="offset points",
                        xytext=(4, 3), fontsize=7, color=c)
    ax.set(xscale="log", yscale="log", xlabel="p99 latency (ms)", ylabel="throughput (items/s)",
           title="Serving: throughput vs latency over concurrency (closed-loop clients)")
    _plain_x(ax)
    _legend_outside(ax)
    return _uri(fig)
