"""What a deploy search leaves beside its rows: ``fragment.yaml`` (the answer's variant and ``serving:``),
``triton/<name>/config.pbtxt`` where the answer is an ONNX Runtime variant, ``deploy.md`` (the answer, the sizing,
the runner-up, the frontiers and every candidate) and the same answer in words for the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from optbench.deploy.fragment import fragment_text, triton_config, triton_name, triton_platform, triton_unavailable
from optbench.deploy.row import CandidateRow


def write_outputs(d: Any, rows: list[CandidateRow]) -> None:
    """Fragment, Triton configuration and deploy.md for the deployer ``d``'s answer (in its record)."""
    run_dir, record = d.opts.run_dir, d.record
    a = record["answer"]
    w = a.get("winner")
    if w is not None:
        acc = d.acc_rows[w["variant_id"]]
        text = fragment_text(acc, yaml.safe_load((d.acc_dir / "spec.yaml").read_text()), w, d.base, d.opts.p99_ms)
        (run_dir / "fragment.yaml").write_text(text)
        a["fragment"] = text
        why = triton_unavailable(acc)
        if why is None:
            name = triton_name(str(d.spec.name))
            folder = run_dir / "triton" / name
            (folder / "1").mkdir(parents=True, exist_ok=True)
            (folder / "config.pbtxt").write_text(triton_config(name, Path(acc["artifact"]), w, acc.get("device") or
                                                               "cpu", platform=triton_platform(acc)))
            a["triton"] = {"config": str(folder / "config.pbtxt"), "model_file": acc["artifact"],
                           "place_model_at": str(folder / "1" / "model.onnx")}
        else:
            a["triton"] = {"unavailable": why}
    if frontier_plot(rows, a, run_dir / "frontier.svg"):
        a["plot"] = "frontier.svg"
    (run_dir / "deploy.md").write_text(markdown(record, rows))


def frontier_plot(rows: list[CandidateRow], a: dict, path: Path) -> bool:
    """Two panels over every eligible candidate, one colour per variant: peak QPS per device against the p99 at
    the peak, and against J per item (where energy was read); the frontier joined, the answer ringed. False where
    nothing is eligible."""
    good = [r for r in rows if (a.get("verdicts") or {}).get(r.config.key) == "eligible" or
            r.config.key in (a.get("frontier_p99") or [])]
    if not good:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from optbench.report.plots import PALETTE

    by_key = {r.config.key: r for r in rows}
    variants = sorted({r.variant_id for r in good})
    colour = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(variants)}
    win = (a.get("winner") or {}).get("key")
    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    for ax, attr, front, title in ((axes[0], "peak_p99_ms", a.get("frontier_p99") or [], "p99 at the peak (ms)"),
                                   (axes[1], "j_per_item", a.get("frontier_energy") or [], "energy per item (J)")):
        pts = [r for r in good if getattr(r, attr) is not None]
        for v in variants:
            mine = [r for r in pts if r.variant_id == v]
            ax.scatter([r.peak_qps for r in mine], [getattr(r, attr) for r in mine], color=colour[v], s=28,
                       label=v if ax is axes[0] else None)
        line = [by_key[k] for k in front if k in by_key]
        if line:
            ax.plot([r.peak_qps for r in line], [getattr(r, attr) for r in line], color="#555555", lw=1, ls="--")
        if win in by_key and getattr(by_key[win], attr) is not None:
            ax.scatter([by_key[win].peak_qps], [getattr(by_key[win], attr)], s=160, facecolors="none",
                       edgecolors="#000000", lw=1.5)
        ax.set_xlabel("peak QPS per device at the p99 bound")
        ax.set_ylabel(title)
        if not pts:
            ax.text(0.5, 0.5, "no energy reading", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.legend(loc="lower center", ncol=min(3, len(variants)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.08 + 0.04 * (len(variants) // 3), 1, 1))
    fig.savefig(path, format="svg")
    plt.close(fig)
    return True


def _n(v: Any, fmt: str = ".4g") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) else "-"


def _q(v: Any) -> str:
    """A QPS: whole numbers with separators from 1,000 on."""
    if not isinstance(v, (int, float)):
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _mib(v: Any) -> str:
    return f"{v / 2**20:,.0f}" if isinstance(v, (int, float)) else "-"


def answer_lines(record: dict) -> list[str]:
    """The answer in sentences."""
    a, asked = record.get("answer") or {}, record.get("asked") or {}
    s = record.get("settings") or {}
    out = [f"searched {a.get('candidates', 0)} candidate(s) of {len(record['accuracy']['passing'])} passing "
           f"variant(s) for {asked.get('qps', 0):,.6g} QPS at p99 <= {s.get('p99_ms'):g} ms (objective "
           f"{asked.get('objective')}); stopped: {record.get('stopped')}; {record.get('elapsed_s', 0):.0f} s"]
    bad = {v: why for v, why in record["accuracy"]["verdicts"].items() if why}
    for vid, why in list(bad.items())[:5]:
        out.append(f"not a candidate: {vid} fails {why[0]}" + (f" (and {len(why) - 1} more)" if len(why) > 1 else ""))
    w = a.get("winner")
    if not a.get("candidates"):
        out.append("no candidate was measured" + ("" if record["accuracy"]["passing"] else
                                                  f": {record.get('stopped')}"))
        return out
    if w is None:
        c = a.get("closest")
        out.append("no configuration meets the p99 bound" + (f" within {a['max_devices']} devices" if a.get(
            "max_devices") else "") + (f"; the closest: {c['label']}, {_q(c['peak_qps'])} QPS per device, needs "
                                       f"{c['devices']} devices" if c else ""))
        return out
    head = round(100 * (1 - w["load_share"]))
    out.append(f"answer: {w['label']}: peak {_q(w['peak_qps'])} QPS per device at p99 {_n(w['peak_p99_ms'])} ms "
               f"(LoadGen {w['peak_validity']}), memory {_mib(w['memory_bytes'])} MiB"
               + (f", {w['j_per_item']:.3g} J/item" if w.get("j_per_item") is not None else ""))
    out.append(f"devices: {w['devices']} for {asked['qps']:,.6g} QPS: {_q(w['load_qps'])} QPS each, "
               f"{w['load_share']:.0%} of the measured peak ({head}% headroom; at least "
               f"{asked['headroom']:.0%} asked), p99 {_n(w['p99_at_load_ms'])} ms at that load")
    g = a.get("against_given")
    if g is not None:
        ratio = f"{g['ratio']:.2f}x its peak" if g.get("ratio") else "it met the bound at no QPS"
        out.append(f"against the spec's own serving configuration ({g['label']}: {_q(g['peak_qps'])} QPS per "
                   f"device at the bound{_unconfirmed(g)}): {ratio}")
    r = a.get("runner_up")
    if r is not None:
        out.append(f"runner-up: {r['label']}: {_q(r['peak_qps'])} QPS per device{_unconfirmed(r)}, {r['devices']} "
                   f"device(s); it lost because it {r['why']}")
    else:
        out.append("runner-up: none (no other eligible configuration)")
    return out


def _unconfirmed(d: dict) -> str:
    """A note where LoadGen did not call the run at a candidate's peak VALID (its p99 met the bound, but, say, too
    few queries for LoadGen's early-stopping estimate of it): that peak is not a figure to quote as it stands."""
    v = d.get("peak_validity")
    return "" if v in (None, "VALID") else f" (LoadGen {v} at that peak)"


def markdown(record: dict, rows: list[CandidateRow]) -> str:
    a = record.get("answer") or {}
    by_key = {r.config.key: r for r in rows}
    lines = ["# Deploy search", "", *[f"- {x}" for x in answer_lines(record)], ""]
    if a.get("fragment"):
        lines += ["## The fragment (paste into the spec; `optbench run` measures it again)", "", "```yaml",
                  a["fragment"].rstrip(), "```", ""]
    t = a.get("triton") or {}
    if t.get("config"):
        lines += ["## Triton", "", f"`{t['config']}`; copy `{t['model_file']}` to `{t['place_model_at']}`.", "",
                  "```", Path(t["config"]).read_text().rstrip(), "```", ""]
    elif t.get("unavailable"):
        lines += ["## Triton", "", f"No config.pbtxt: {t['unavailable']}.", ""]
    if a.get("plot"):
        lines += ["## Frontier", "", f"![peak QPS per device against p99 and J per item]({a['plot']})", ""]
    for title, keys, col in (("Frontier: peak QPS per device against p99 at the peak", a.get("frontier_p99") or [],
                              "p99 ms"),
                             ("Frontier: peak QPS per device against energy per item", a.get("frontier_energy") or [],
                              "J/item")):
        lines += [f"## {title}", ""]
        if not keys:
            lines += ["No candidate " + ("has an energy reading." if col == "J/item" else "met the bound."), ""]
            continue
        lines += [f"| candidate | peak QPS | {col} | memory MiB |", "| --- | --- | --- | --- |"]
        for k in keys:
            r = by_key[k]
            y = r.peak_p99_ms if col == "p99 ms" else r.j_per_item
            lines.append(f"| {r.config.label()} | {_q(r.peak_qps)} | {_n(y)} | {_mib(r.memory_bytes)} |")
        lines.append("")
    lines += ["## Every candidate", "", "| step | candidate | status | peak QPS | p99 ms | LoadGen | J/item | memory MiB "
              "| verdict |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(rows, key=lambda r: (r.step if r.step is not None else -1, r.variant_id, r.instances, r.max_batch,
                                         r.sizes_rule, r.max_delay_ms)):
        lines.append(f"| {r.step} {r.phase} | {r.config.label()} | {r.status} | {_q(r.peak_qps)} | "
                     f"{_n(r.peak_p99_ms)} | {r.peak_validity or '-'} | {_n(r.j_per_item, '.3g')} | "
                     f"{_mib(r.memory_bytes)} | {(a.get('verdicts') or {}).get(r.config.key, '-')} |")
    lines += ["", "## Accuracy", "", f"From the run `{record['accuracy']['run_dir']}`.", ""]
    for vid, why in record["accuracy"]["verdicts"].items():
        lines.append(f"- {vid}: " + ("passes every accuracy budget" if not why else "fails: " + "; ".join(why)))
    return "\n".join(lines) + "\n"
