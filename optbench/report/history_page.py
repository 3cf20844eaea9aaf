"""The run history's page (``optbench history --html``): a plot per metric, a line per variant, points coloured by
machine, change points marked; drawn here (only report/ draws) and written through the one HTML writer."""

from __future__ import annotations

import base64
import io

import optbench.clock as clock
from optbench.history.trends import series
from optbench.report.write import html


def html_page(history, spec_name: str, variant: str, metrics: list[str]) -> str:
    """One plot per metric: a line per variant, points coloured by machine, change points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = []
    for metric in metrics:
        found = series(history, spec_name, variant, metric)
        if not found:
            continue
        machines = sorted({s.machine for s in found})
        colour = {m: plt.cm.tab10(i % 10) for i, m in enumerate(machines)}
        fig, ax = plt.subplots(figsize=(10, 4.2))
        for s in found:
            xs, ys = [p["run"] for p in s.points], [p["value"] for p in s.points]
            ax.plot(xs, ys, color="grey", lw=0.8, alpha=0.6)
            ax.scatter(xs, ys, color=colour[s.machine], s=18, zorder=3)
            for x in s.steps:
                ax.axvline(s.points[x.index]["run"] - 0.5, color="red", ls="--", lw=0.8)
                ax.annotate(f"{x.ratio - 1:+.0%}", (s.points[x.index]["run"], x.after), fontsize=7, color="red",
                            textcoords="offset points", xytext=(3, 4))
        for m in machines:
            ax.scatter([], [], color=colour[m], label=m[:60])
        ax.set(xlabel="run (in start order)", ylabel=metric, title=f"{metric} per run")
        ax.legend(fontsize=7, frameon=False, loc="best")
        buf = io.BytesIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        plt.close(fig)
        figures.append({"metric": metric, "uri": "data:image/svg+xml;base64," + base64.b64encode(buf.getvalue()).decode()})
    return html("history.html.j2", spec_name=spec_name, variant=variant, generated=clock.stamp(),
                database=history.safe_url, figures=figures)
