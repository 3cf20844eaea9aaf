"""Plots of a run, each returned as a base64 SVG data URI (self-contained, no script, nothing to inject)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

plt.rcParams.update({"svg.fonttype": "path", "figure.dpi": 100, "axes.grid": True, "grid.alpha": 0.3,
                     "font.size": 9, "svg.hashsalt": "optbench"})


def _uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()


def series_label(row) -> str:
    t = "" if row["transform"] == "none" else f" [{row['transform']}]"
    q = f"-{row['int8_label']}" if row.get("int8_label") else ""
    return f"{row['backend']} {row['precision']}{q}{t}"


def latency_vs_batch(ok: pd.DataFrame) -> str | None:
    if ok["batch_size"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, g in ok.groupby("series"):
        g = g.groupby("batch_size").median(numeric_only=True).sort_index()
        line, = ax.plot(g.index, g["latency_ms_p50"], marker="o", label=label)
        ax.fill_between(g.index, g["latency_ms_p90"], g["latency_ms_p99"], alpha=0.2, color=line.get_color())
    ax.set(xscale="log", yscale="log", xlabel="batch size (items)", ylabel="latency p50 (ms); band p90–p99",
           title="Latency vs batch size")
    ax.legend(fontsize=7)
    return _uri(fig)


def throughput_bars(ok: pd.DataFrame) -> str:
    d = ok.sort_values("throughput_items_s")
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(d) + 1.2))
    ax.barh(d["variant_id"], d["throughput_items_s"], color="#4c78a8")
    ax.set(xlabel="throughput (items/s, at p50 latency)", title="Throughput")
    ax.tick_params(axis="y", labelsize=6)
    return _uri(fig)


def memory_bars(ok: pd.DataFrame) -> str | None:
    d = ok.dropna(subset=["peak_rss_bytes"]).sort_values("peak_rss_bytes")
    if d.empty:
        return None
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(d) + 1.2))
    ax.barh(d["variant_id"], d["peak_rss_bytes"] / 2**20, color="#f58518", label="peak host RSS")
    if d["gpu_peak_bytes"].notna().any():
        ax.barh(d["variant_id"], d["gpu_peak_bytes"].fillna(0) / 2**20, color="#54a24b", alpha=0.8, label="peak GPU memory")
    ax.set(xlabel="memory (MiB)", title="Peak memory per variant (one process each)")
    ax.tick_params(axis="y", labelsize=6)
    ax.legend(fontsize=7)
    return _uri(fig)


def pareto(ok: pd.DataFrame, metric: str, frontier: pd.DataFrame) -> str:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, g in ok.groupby("series"):
        ax.scatter(g["ms_per_item"], g[metric], label=label, s=25)
    f = frontier.sort_values("ms_per_item")
    ax.step(f["ms_per_item"], f[metric], where="post", color="black", lw=1, label="Pareto frontier")
    ax.scatter(f["ms_per_item"], f[metric], facecolors="none", edgecolors="black", s=80)
    ax.set(xscale="log", xlabel="latency p50 per item (ms)", ylabel=metric.replace("_", " ") + " (fraction)",
           title="Accuracy vs latency")
    ax.legend(fontsize=7)
    return _uri(fig)


def latency_vs_shape(ok: pd.DataFrame) -> str | None:
    if ok["shape_label"].nunique() < 2:
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    key = ok["shape_sort"]
    for (label, bs), g in ok.assign(_k=key).groupby(["series", "batch_size"]):
        g = g.sort_values("_k")
        ax.plot(g["shape_label"], g["latency_ms_p50"], marker="o", label=f"{label} bs{bs}")
    ax.set(yscale="log", xlabel="shape (dynamic dims)", ylabel="latency p50 (ms)", title="Latency vs shape")
    ax.legend(fontsize=6)
    return _uri(fig)
