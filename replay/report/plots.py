"""The report's figures, drawn with matplotlib's headless Agg backend.

Each function takes the reduced runs and returns a figure; :func:`render_all` draws them all as
PNG bytes. Colours mean the same thing everywhere: red for zapped page tables, orange for cache
eviction, grey for faults neither caused; one colour per run elsewhere.
"""

from __future__ import annotations

import functools
import io
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable

    from matplotlib.figure import Figure

    from replay.report.data import RunSeries

ATTRIBUTION_STYLE = (
    ("faults_zapped_page_tables", "zapped page tables", "#d62728"),
    ("faults_cache_eviction", "cache eviction", "#ff7f0e"),
    ("faults_none", "neither", "#9e9e9e"),
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
LINESTYLES = ("-", "--", ":", "-.")
RUN_COLOURS = ("#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22")
WIDTH_IN = 10.0
DPI = 100


def plain_text(draw: Callable[[list[RunSeries]], Figure]) -> Callable[[list[RunSeries]], Figure]:
    """Draw a figure whose texts are never parsed as mathtext.

    Labels come from folder and VM names, which may hold "$": matplotlib would read the text
    between two as math (and fail on what is not). A text takes the setting when it is made.
    """

    @functools.wraps(draw)
    def drawn(runs: list[RunSeries]) -> Figure:
        from matplotlib import rc_context

        with rc_context({"text.parse_math": False}):
            return draw(runs)

    return drawn


def _figure(rows: int, height_per_row: float = 2.4, **kw: Any) -> tuple[Figure, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(WIDTH_IN, 0.9 + height_per_row * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, 1, squeeze=False, **kw)[:, 0]
    return fig, axes


def _colour(i: int) -> str:
    return RUN_COLOURS[i % len(RUN_COLOURS)]


@plain_text
def faults_over_time(runs: list[RunSeries]) -> Figure:
    """Faults per second, stacked by attribution, one panel per run; reclaim passes ticked."""
    fig, axes = _figure(len(runs), sharex=True)
    fig.suptitle("Guest faults over time, by attribution")
    for ax, r in zip(axes, runs, strict=True):
        t = r.t_s()
        rates = [r.timeline[col] / r.bucket_s for col, _, _ in ATTRIBUTION_STYLE]
        ax.stackplot(
            t,
            *rates,
            labels=[label for _, label, _ in ATTRIBUTION_STYLE],
            colors=[c for _, _, c in ATTRIBUTION_STYLE],
            step="post",
            linewidth=0,
        )
        marked = _mark_sparse_buckets(ax, t + r.bucket_s / 2, rates, len(t))
        passes = t[r.timeline["reclaim_passes"] > 0]
        if len(passes):
            ax.vlines(
                passes,
                0.9,
                1.0,
                transform=ax.get_xaxis_transform(),
                color="#1f77b4",
                linewidth=0.8,
                label="reclaim pass (in bucket)",
            )
        title = f"{r.label}: {r.totals['faults']:,} faults"
        if marked:
            title += f" (in {marked:,} of {len(t):,} buckets, each marked: too narrow to see)"
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_ylabel("faults / s")
        ax.set_ylim(bottom=0)
        ax.yaxis.set_major_formatter(_thousands())
        ax.margins(x=0.01 if marked else 0)
        ax.grid(axis="y", alpha=0.3)
    _figure_legend(fig, axes)
    axes[-1].set_xlabel("time since the trace's first event (s)")
    return fig


SPARSE_MARKS = 400
"""At most this many non-empty buckets get a mark of their own when buckets are too narrow."""


def _mark_sparse_buckets(ax: Any, centres: np.ndarray, rates: list[np.ndarray], n: int) -> int:
    """Mark every non-empty bucket when buckets are narrower than a pixel or two.

    A stacked area of buckets a fraction of a pixel wide draws nothing a reader can see: a
    trace whose faults all fall in one bucket of a long span looked empty. Each non-empty
    bucket then gets a marker at the top of each attribution's band, in its colour. Returns the
    number of buckets marked (0 when the area plot shows them, or when too many are non-empty
    for marks to help: a dense plot is visible as it is).
    """
    plot_px = WIDTH_IN * DPI * 0.85
    if n == 0 or plot_px / n >= 2:
        return 0
    total = np.sum(rates, axis=0)
    busy = np.flatnonzero(total > 0)
    if not len(busy) or len(busy) > SPARSE_MARKS:
        return 0
    top = np.zeros(len(busy))
    for values, (_, _, colour) in zip(rates, ATTRIBUTION_STYLE, strict=True):
        band = values[busy]
        bottom, top = top, top + band
        shown = band > 0
        # A bar a few pixels wide over the band, capped by a dot: visible at any bucket width.
        x = centres[busy][shown]
        ax.vlines(x, bottom[shown], top[shown], color=colour, linewidth=3, zorder=3)
        ax.scatter(x, top[shown], s=28, color=colour, zorder=3, clip_on=False)
    ax.set_ylim(0, float(top.max()) * 1.15)
    return len(busy)


def _thousands() -> Any:
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda v, _pos: f"{v:,.0f}")


def _figure_legend(fig: Figure, axes: Any) -> None:
    """One legend below the panels, from every panel's labelled artists (no duplicates)."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(handles.values(), handles.keys(), loc="outside lower center", ncols=4, fontsize=9)


@plain_text
def scans_over_time(runs: list[RunSeries]) -> Figure:
    """Pages freed by each shrinker scan call, by run."""
    fig, (ax,) = _figure(1, height_per_row=3.4)
    fig.suptitle("Shrinker scan calls: pages freed per call")
    for i, r in enumerate(runs):
        n = len(r.scan_t_s)
        label = f"{r.label} ({n:,} calls, {int(r.scan_freed.sum()):,} pages)"
        if n:
            ax.scatter(
                r.scan_t_s,
                r.scan_freed,
                s=22,
                color=_colour(i),
                marker=MARKERS[i % len(MARKERS)],
                alpha=0.7,
                label=label,
            )
        else:
            ax.plot([], [], " ", label=f"{r.label} (no scan calls)")
    ax.set_xlabel("time since the trace's first event (s)")
    ax.set_ylabel("pages freed per call")
    top = max((int(r.scan_freed.max()) for r in runs if len(r.scan_freed)), default=1)
    ax.set_ylim(-0.02 * top, 1.08 * top)
    ax.grid(alpha=0.3)
    _figure_legend(fig, [ax])
    return fig


@plain_text
def cache_occupancy(runs: list[RunSeries]) -> Figure:
    """shadow_page cache pages of the busiest vCPUs over time, one panel per run."""
    fig, axes = _figure(len(runs), height_per_row=2.0, sharex=True)
    fig.suptitle("vCPU MMU page cache occupancy (busiest vCPUs by accesses)")
    for ax, r in zip(axes, runs, strict=True):
        end = float(r.t_s()[-1] + r.bucket_s) if len(r.t_s()) else 0.0
        for j, (key, t, level) in enumerate(r.vcpu_cache):
            # A level holds from its time until the next row; the cache starts empty.
            x = np.concatenate([[0.0], t, [end]])
            y = np.concatenate([[0], level, [level[-1] if len(level) else 0]])
            ax.step(x, y, where="post", color=_colour(j), linewidth=1.2, label=f"vCPU {key}")
        ax.set_title(
            f"{r.label}: {r.totals['peak_cache_pages']:,} pages at the peak (all vCPUs)",
            loc="left",
            fontsize=10,
        )
        ax.set_ylabel("pages in cache")
        ax.set_ylim(bottom=0)
        ax.margins(x=0)
        ax.grid(axis="y", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    axes[-1].set_xlabel("time since the trace's first event (s)")
    return fig


@plain_text
def cost_cdf(runs: list[RunSeries]) -> Figure:
    """Distribution of the estimated cost of a fault per run: the CDF, and its tail."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    fig = Figure(figsize=(WIDTH_IN, 3.9), dpi=DPI, layout="constrained")
    cdf_ax, tail_ax = fig.subplots(1, 2)
    fig.suptitle("Estimated cost per fault (cost model, not measured)")
    for i, r in enumerate(runs):
        if not len(r.cost_values_ns):
            continue
        style = {
            "color": _colour(i),
            "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "linewidth": 1.6,
        }
        us = r.cost_values_ns / 1e3
        cdf_ax.ecdf(
            us,
            weights=r.cost_counts,
            label=f"{r.label} ({int(r.cost_counts.sum()):,} faults)",
            **style,
        )
        # 1 - CDF on a log scale shows the rare expensive faults the CDF squashes at the top.
        share = r.cost_counts / r.cost_counts.sum()
        above = np.concatenate([[1.0], 1.0 - np.cumsum(share)])[:-1]
        tail_ax.step(us, np.clip(above, 1e-12, None), where="pre", **style)
    for ax in (cdf_ax, tail_ax):
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
        ax.set_xlabel("estimated cost of one fault (µs, log scale)")
        ax.grid(alpha=0.3, which="both")
    cdf_ax.set_ylabel("fraction of faults costing at most x")
    cdf_ax.set_ylim(0, 1.02)
    tail_ax.set_yscale("log")
    tail_ax.set_ylabel("fraction costing x or more (log)")
    _figure_legend(fig, [cdf_ax])
    return fig


def shrinker_stall_ns(totals: dict[str, Any]) -> int:
    """What the shrinker's work cost the guests: its faults' stall and its TLB flushes."""
    stall = totals["stall_ns_by_attribution"]
    return int(stall["zapped_page_tables"] + stall["cache_eviction"] + totals["scan_flush_ns"])


@plain_text
def freed_vs_stall(runs: list[RunSeries]) -> Figure:
    """The headline: pages the shrinker freed against the guest stall it caused, per run."""
    from matplotlib.figure import Figure

    height = 1.6 + 0.45 * len(runs)
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    freed_ax, stall_ax = fig.subplots(1, 2, sharey=True)
    fig.suptitle("What the shrinker freed, and what it cost the guests (estimates)")
    labels = [r.label for r in runs]
    y = np.arange(len(runs))
    freed_mib = np.array([r.totals["pages_freed"] * 4 / 1024 for r in runs])
    stall_ms = np.array([shrinker_stall_ns(r.totals) / 1e6 for r in runs])
    colours = [_colour(i) for i in range(len(runs))]
    for ax, values, unit, zero, title in (
        (freed_ax, freed_mib, "MiB", "nothing freed", "memory freed by the shrinker (MiB)"),
        (stall_ax, stall_ms, "ms", "no stall", "guest stall it caused (ms): faults + TLB flushes"),
    ):
        ax.barh(y, values, color=colours, height=0.6)
        top = float(values.max()) if len(values) and values.max() > 0 else 1.0
        if not values.any():
            ax.set_xticks([])  # an axis of made-up numbers under empty bars says nothing
        for yi, v in zip(y, values, strict=True):
            # Nothing is said in words: an empty bar beside "0.0 MiB" reads as a missing one.
            ax.annotate(
                f"{v:,.1f} {unit}" if v > 0 else zero,
                (v, yi),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
            )
        ax.set_xlim(0, top * 1.3)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    freed_ax.set_yticks(y, labels)
    freed_ax.invert_yaxis()
    return fig


PLOTS: tuple[tuple[str, str, Callable[[list[RunSeries]], Figure]], ...] = (
    ("headline", "Pages freed versus guest stall, per run", freed_vs_stall),
    ("faults", "Faults over time, stacked by attribution", faults_over_time),
    ("scans", "Shrinker scans over time", scans_over_time),
    ("cache", "vCPU cache occupancy over time", cache_occupancy),
    ("cost-cdf", "Distribution of estimated fault cost", cost_cdf),
)
"""(file-name part, caption, drawing function) of every figure, in report order."""


def render_all(runs: list[RunSeries]) -> list[tuple[str, str, bytes]]:
    """Every figure as (name, caption, PNG bytes)."""
    out = []
    for name, caption, draw in PLOTS:
        fig = draw(runs)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
        out.append((name, caption, buf.getvalue()))
    return out
