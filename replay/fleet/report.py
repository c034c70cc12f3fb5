"""``replay report FLEET_DIR``: the fleet drawn, as one self-contained HTML file and PNGs.

The same conventions as a run's report (:mod:`replay.report`): plots inline as data URIs, the
same plots as PNGs beside the page, every file renamed into place only once all are written.
The figures: the CDF across traces of the estimated stall per freed page (one line per policy
and sweep point), each trace's faults by attribution per million accesses, and, for a sweep,
the frontier of pages freed against estimated shrinker stall. The worst traces' table links to
their run folders.
"""

from __future__ import annotations

import base64
import html
import io
import os
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.errors import OutputPathError
from replay.fleet.figures import key_figures, with_figures
from replay.report import Report
from replay.report.html import CSS
from replay.report.plots import ATTRIBUTION_STYLE, DPI, LINESTYLES, RUN_COLOURS, WIDTH_IN

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl
    from matplotlib.figure import Figure

    from replay.fleet.load import LoadedFleet

POLICY_COLOUR = {"zap": "#d62728", "cache": "#ff7f0e", "none": "#1f77b4"}


def _colour(policy: str, i: int) -> str:
    return POLICY_COLOUR.get(policy, RUN_COLOURS[i % len(RUN_COLOURS)])


def stall_cdf(rows: pl.DataFrame) -> Figure:
    """CDF across traces of the estimated stall per freed page, per policy and sweep point."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, 4.2), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    points = rows["point"].unique(maintain_order=True).to_list()
    drawn = 0
    for i, policy in enumerate(rows["policy"].unique(maintain_order=True).to_list()):
        for j, point in enumerate(points):
            sub = rows.filter((rows["policy"] == policy) & (rows["point"] == point))
            values = np.sort(sub["stall_per_freed_page"].drop_nulls().to_numpy())
            if not len(values):
                continue
            frac = np.arange(1, len(values) + 1) / len(values)
            label = policy if len(points) == 1 else f"{policy} @ {point}"
            ax.step(
                values,
                frac,
                where="post",
                color=_colour(policy, i),
                linestyle=LINESTYLES[j % len(LINESTYLES)],
                label=label,
            )
            drawn += 1
    ax.set_xlabel("estimated guest stall per page the shrinker freed (ns)")
    ax.set_ylabel("fraction of traces")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=8)
    else:
        ax.text(
            0.5, 0.5, "the shrinker freed nothing in any trace", ha="center", transform=ax.transAxes
        )
    fig.suptitle("Stall per freed page across the fleet's traces (estimates)")
    return fig


def faults_per_trace(rows: pl.DataFrame) -> Figure:
    """Each trace's faults by attribution per million accesses, one panel per policy.

    At the first sweep point: the trace-by-trace picture is the same kind at every point.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import StrMethodFormatter

    first = rows["point"][0]
    at = rows.filter(rows["point"] == first)
    policies = at["policy"].unique(maintain_order=True).to_list()
    traces = at["trace"].unique(maintain_order=True).to_list()
    fig = Figure(
        figsize=(WIDTH_IN, 1.2 + 0.28 * len(traces) * len(policies)), dpi=DPI, layout="constrained"
    )
    axes = fig.subplots(len(policies), 1, squeeze=False, sharex=True)[:, 0]
    for ax, policy in zip(axes, policies, strict=True):
        sub = at.filter(at["policy"] == policy)
        y = np.arange(sub.height)
        left = np.zeros(sub.height)
        for column, label, colour in ATTRIBUTION_STYLE:
            attr = column.removeprefix("faults_")
            values = sub[f"faults_per_m_accesses.{attr}"].to_numpy()
            ax.barh(y, values, left=left, color=colour, height=0.7, label=label)
            left += values
        ax.set_yticks(y, sub["trace"].to_list(), fontsize=8)
        ax.invert_yaxis()
        ax.set_title(policy, fontsize=10, loc="left")
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlabel("faults per million accesses")
    axes[-1].xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="outside right upper")  # clear of the bars
    fig.suptitle(f"Faults by attribution, per trace (sweep point {first})")
    return fig


def frontier_plot(rows: pl.DataFrame) -> Figure:
    """Per policy, every sweep point's fleet-wide pages freed against shrinker stall.

    Points no other point beats on both (more freed, less stall) are joined: the frontier.
    """
    import polars as pl
    from matplotlib.figure import Figure

    totals = (
        rows.group_by("policy", "point", maintain_order=True)
        .agg(pl.col("pages_freed").sum(), pl.col("shrinker_stall_ns").sum())
        .filter(pl.col("policy") != "none")
    )
    policies = totals["policy"].unique(maintain_order=True).to_list()
    fig = Figure(figsize=(WIDTH_IN, 4.2), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, max(len(policies), 1), squeeze=False)[0]
    for i, (ax, policy) in enumerate(zip(axes, policies, strict=False)):
        sub = totals.filter(pl.col("policy") == policy)
        freed = sub["pages_freed"].to_numpy() * 4 / 1024
        stall = sub["shrinker_stall_ns"].to_numpy() / 1e6
        names = sub["point"].to_list()
        optimal = [
            k
            for k in range(len(names))
            if not any(
                freed[m] >= freed[k]
                and stall[m] <= stall[k]
                and (freed[m] > freed[k] or stall[m] < stall[k])
                for m in range(len(names))
            )
        ]
        ax.scatter(stall, freed, color="#9e9e9e", zorder=2)
        best = sorted(optimal, key=lambda k: stall[k])
        ax.plot(
            stall[best], freed[best], "o-", color=_colour(policy, i), zorder=3, label="frontier"
        )
        for k, name in enumerate(names):
            ax.annotate(
                name, (stall[k], freed[k]), xytext=(4, 4), textcoords="offset points", fontsize=7
            )
        ax.set_title(policy, fontsize=10)
        ax.set_xlabel("est. shrinker stall, all traces (ms)")
        ax.set_ylabel("memory freed, all traces (MiB)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("Which setting frees the most memory for the least stall (estimates)")
    return fig


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def figures(fleet: LoadedFleet) -> list[tuple[str, str, bytes]]:
    """The report's figures as (name, caption, PNG bytes)."""
    from matplotlib import rc_context

    rows = with_figures(fleet.table)
    if rows.is_empty():
        raise OutputPathError(
            f"fleet {fleet.path} has no successful job to draw; fix its failed jobs and re-run it"
        )
    out = []
    with rc_context({"text.parse_math": False}):  # names may hold "$" (see report.plots)
        out.append(
            ("stall-cdf", "CDF across traces of stall per freed page", _png(stall_cdf(rows)))
        )
        out.append(("faults", "Faults by attribution per trace", _png(faults_per_trace(rows))))
        if rows["point"].n_unique() > 1:
            out.append(("frontier", "Frontier of the sweep", _png(frontier_plot(rows))))
    return out


def _e(text: Any) -> str:
    return html.escape(str(text))


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _link(target: Path, base: Path, text: str) -> str:
    href = os.path.relpath((target / "summary.json").resolve(), base.resolve())
    return f'<a href="{_e(href)}">{_e(text)}</a>'


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.2f}"


def render_page(
    fleet: LoadedFleet, figs: list[tuple[str, str, bytes]], pngs: dict[str, str], base: Path
) -> str:
    """The whole HTML document; links to run folders are relative to ``base`` (its folder)."""
    doc = fleet.doc
    counts = doc["counts"]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>kvm-mmu-replay fleet: {_e(fleet.path.name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>KVM MMU shrinker replay: fleet {_e(fleet.path.name)}</h1>",
        f"<p>{counts['traces']} traces, {counts['jobs']} jobs ({counts['failed']} failed), "
        f"policies {_e(', '.join(doc['settings']['policies']))}. Every stall figure is an "
        "estimate from the cost model, not a measurement.</p>",
    ]
    for point, by_policy in doc["distributions"].items():
        policies = list(by_policy)
        parts.append(f"<h2>Across traces at sweep point {_e(point)}</h2>")
        parts.append("<p>min / p50 / p90 / p99 / max over the traces</p>")
        rows = [
            [_e(label)]
            + [
                _e(
                    " / ".join(
                        _num(by_policy[p][name][q]) for q in ("min", "p50", "p90", "p99", "max")
                    )
                )
                for p in policies
            ]
            for name, label in key_figures()
        ]
        parts.append(_table(["", *policies], rows))
    parts.append("<h2>Worst traces by estimated shrinker stall</h2>")
    parts.append(
        _table(
            ["trace", "point", "policy", "shrinker stall", "pages freed", "run"],
            [
                [
                    _e(w["trace"]),
                    _e(w["point"]),
                    _e(w["policy"]),
                    _e(f"{w['shrinker_stall_ns'] / 1e6:,.2f} ms"),
                    _e(f"{w['pages_freed']:,}"),
                    _link(fleet.path / w["run"], base, w["run"]),
                ]
                for w in doc["worst"]
            ],
        )
    )
    failed = [j for j in doc["jobs"] if j["status"] == "failed"]
    if failed:
        parts.append("<h2>Failed jobs</h2><ul>")
        parts += [
            f"<li>{_e(j['trace'])} at {_e(j['point'])}: {_e(j['error'])}</li>" for j in failed
        ]
        parts.append("</ul>")
    parts.append("<h2>Plots</h2>")
    for name, caption, png in figs:
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="{_e(name)}"><img alt="{_e(caption)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_e(caption)} (also <code>{_e(pngs[name])}</code>)</figcaption></figure>"
        )
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_fleet_report(fleet: LoadedFleet, out: Path, *, force: bool = False) -> Report:
    """Write the fleet's report to ``out`` (.html) and its PNGs beside it, all or nothing."""
    import matplotlib

    matplotlib.use("Agg")
    from replay.atomic import check_output_path

    check_output_path(out, "report")
    figs = figures(fleet)
    pngs = {name: out.with_name(f"{out.stem}-{name}.png") for name, _, _ in figs}
    if not force:
        for path in (out, *pngs.values()):
            if path.exists():
                raise OutputPathError(
                    f"{path} exists; pass --force to replace it or choose another -o"
                )
    page = render_page(fleet, figs, {k: p.name for k, p in pngs.items()}, out.parent)
    staged: list[tuple[Path, Path]] = []
    try:
        for name, _, png in figs:
            tmp = pngs[name].with_name(f".{pngs[name].name}.{os.getpid()}.partial")
            staged.append((tmp, pngs[name]))
            tmp.write_bytes(png)
        tmp_html = out.with_name(f".{out.name}.{os.getpid()}.partial")
        staged.append((tmp_html, out))
        tmp_html.write_text(page, encoding="utf-8")
        for tmp, final in staged:
            tmp.replace(final)
    except BaseException:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
        raise
    return Report(out, list(pngs.values()))
