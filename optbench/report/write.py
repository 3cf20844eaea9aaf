"""The one HTML writer and the one Markdown writer of reports and comparisons.

HTML comes from the jinja2 templates in ``optbench/report/templates`` (shipped in the wheel, read through the
package loader), autoescaped, every page extending ``base.html.j2`` (its head, CSP and style). Markdown tables
come from :func:`md_table`, every cell escaped by :func:`md_text`. The cell formats the templates use are here
too, as filters: :func:`fmt` for report cells, :func:`num` for a number in a fixed format."""

from __future__ import annotations

import functools
import math

import jinja2

BYTES = {"model_bytes", "rss_delta_bytes", "gpu_peak_bytes", "peak_rss_bytes", "gpu_process_peak_bytes"}


def fmt(v, col: str = "") -> str:
    """A cell: MiB for bytes, thousands separators (never scientific notation) for throughput and large values,
    percent for spreads, three or four significant figures elsewhere."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if col in BYTES:
        return f"{v / 2**20:,.2f}"
    if col == "speedup":
        return f"{v:.2f}×"
    if col.endswith("_round_spread"):
        return f"{v:.1%}"
    if isinstance(v, float):
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        if v == 0:
            return "0"
        if col == "throughput_items_s" or abs(v) >= 1e3:
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
        return f"{v:.3g}" if abs(v) < 1e-2 else f"{v:.4g}"
    return str(v)


def is_number(v) -> bool:
    return isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))


def num(v, spec: str = ".3f") -> str:
    """``v`` in the format ``spec`` (e.g. '.1%'), '–' where it is not a number."""
    return format(v, spec) if is_number(v) else "–"


@functools.cache
def environment() -> jinja2.Environment:
    """The one jinja2 environment: templates from the package, autoescaped, an undefined name an error."""
    env = jinja2.Environment(loader=jinja2.PackageLoader("optbench.report", "templates"),
                             autoescape=jinja2.select_autoescape(("html", "html.j2"), default=True),
                             undefined=jinja2.StrictUndefined)
    env.filters.update(fmt=fmt, num=num)
    return env


def html(template: str, **context) -> str:
    """The page ``template`` (a name under templates/) rendered with ``context``; every value is escaped."""
    return environment().get_template(template).render(**context)


def md_text(text) -> str:
    """Text safe in a Markdown table cell or list item, and readable as plain text: '|' escaped, a '<' that could
    open an HTML tag or an autolink (before a letter, '/', '!' or '?') backslash-escaped, every other '<' and '>' as
    written ('p99 <= 5' stays so, never '&lt;='), one line."""
    import re

    text = str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")
    return re.sub(r"<(?=[A-Za-z/!?])", r"\\<", text)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown (GitHub) table, a line per row, each ending in a newline; cells escaped with :func:`md_text`."""
    line = lambda cells: "| " + " | ".join(md_text(c) for c in cells) + " |\n"  # noqa: E731
    return line(header) + "|" + "---|" * len(header) + "\n" + "".join(line(r) for r in rows)
