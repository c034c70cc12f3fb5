"""The series' own experiments, replayed across the selftest's option range (issue 17).

Usage::

    python scripts/study_series.py [-o study-series] [--jobs 2] [--quick] [--force]

Both shipped scenarios, ``selftest-mmu-shrinker`` (the v2 selftest) and
``dirty-log-perf-drop-caches`` (the v1 testing), are generated at every point of a grid over
the selftest's options and replayed under ``zap``, ``none`` and ``cache``, each on the TDP MMU
and on ``shadow_direct`` (``replay run --mmu shadow_direct``: a ``tdp_mmu=N`` host, the only
mode where the old ``zap`` shrinker had anything to free). The output folder holds:

- ``study.html``: one self-contained page: the headline numbers, the sweep's table and plots,
  then ``replay report`` of each scenario's defaults in both modes (its PNGs embedded);
- ``sweep.csv`` and ``sweep.parquet``: one row per (scenario, point, MMU mode, policy);
- ``study-*.png``: the sweep's plots;
- ``runs/``: each scenario's trace at its defaults and its runs in both modes, as
  ``replay run`` writes them, with their ``report.html`` (``replay diff``, ``replay report``
  and ``replay run`` work on them as on any other).

The grid. The selftest's options range over vCPUs 1-16, memory per vCPU 256 MiB-4 GiB and
delay 10-1000 ms. Its vCPUs never stop, so a point's accesses grow as vCPUs x delay: a full
5 x 3 x 3 grid is about 260 million accesses per MMU mode, some twenty times what fits in the
10 minutes this study is allowed on a 2-core machine. The study instead moves one option at a
time from the defaults (a one-factor design): for the selftest, vCPUs {1, 2, 4, 8, 16},
memory {256 MiB, 1 GiB, 4 GiB} and delay {10, 100, 1000} ms, 9 points, about 14 million
accesses; for the v1 testing, whose runs write each vCPU's memory three times, vCPUs
{1, 4, 16} at 256 MiB, memory {256 MiB, 1 GiB} and the drop_caches period {100, 1000} ms at
1 vCPU and 1 GiB, 5 points, about 28 million accesses. The remaining guesses of each scenario
stay at their stated values. What this measures is each option's own effect on what a scan
frees and what it costs; interactions (16 vCPUs with a 10 ms delay) are left to a fleet run.

On ``replay fleet`` (built in parallel, not used here): generate every point's trace with
``replay synth SCENARIO --set vcpus=.. --set mem_per_vcpu=.. --set delay_ms=..`` into one
folder, then ``replay fleet FOLDER -o fleet-tdp`` and ``replay fleet FOLDER --mmu
shadow_direct -o fleet-shadow``: one job per trace and policy on the Dask workers, and the
fleet table holds the same per-policy totals as ``sweep.parquet``, so the full grid becomes a
question of workers, not of this script.
"""

from __future__ import annotations

import argparse
import base64
import csv
import io
import os
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

SELFTEST = "selftest-mmu-shrinker"
DIRTY_LOG = "dirty-log-perf-drop-caches"
MODES = ("tdp_mmu", "shadow_direct")
POLICIES = ("zap", "none", "cache")
OPTIONS = ("vcpus", "mem_mib", "delay_ms")
LABEL = {
    SELFTEST: "v2 selftest mmu_shrinker_test",
    DIRTY_LOG: "v1 testing: drop_caches during dirty_log_perf_test",
}
DELAY_LABEL = {SELFTEST: "delay -d (ms)", DIRTY_LOG: "drop_caches period (ms)"}


@dataclass(frozen=True)
class Point:
    """One setting of a scenario's options."""

    scenario: str
    vcpus: int
    mem_mib: int
    delay_ms: int

    def variables(self) -> dict[str, str]:
        """The ``--set`` values of this point."""
        delay = "delay_ms" if self.scenario == SELFTEST else "drop_period_ms"
        return {
            "vcpus": str(self.vcpus),
            "mem_per_vcpu": f"{self.mem_mib}MiB",
            delay: str(self.delay_ms),
        }

    @property
    def name(self) -> str:
        short = "selftest" if self.scenario == SELFTEST else "dirtylog"
        return f"{short}-v{self.vcpus}-b{self.mem_mib}M-d{self.delay_ms}"


@dataclass(frozen=True)
class Sweep:
    """One option moved across ``values``, the others held at the anchor's."""

    option: str
    values: tuple[int, ...]
    anchor: Point

    def points(self) -> list[Point]:
        return [replace(self.anchor, **{self.option: v}) for v in self.values]  # type: ignore[arg-type]

    def holds(self, row: dict[str, Any]) -> bool:
        """Whether a table row is a point of this sweep."""
        fixed = all(row[o] == getattr(self.anchor, o) for o in OPTIONS if o != self.option)
        return bool(
            row["scenario"] == self.anchor.scenario and fixed and row[self.option] in self.values
        )


SELFTEST_BASE = Point(SELFTEST, 2, 1024, 100)
"""The selftest's defaults: -v 2 -b 1G -d 100 (and -i 5)."""
DIRTY_LOG_BASE = Point(DIRTY_LOG, 1, 1024, 1000)
"""dirty_log_perf_test's defaults (-v 1 -b 1G) and the loop period of 1 s."""
SWEEPS = (
    Sweep("vcpus", (1, 2, 4, 8, 16), SELFTEST_BASE),
    Sweep("mem_mib", (256, 1024, 4096), SELFTEST_BASE),
    Sweep("delay_ms", (10, 100, 1000), SELFTEST_BASE),
    # The v1 runs write each vCPU's memory three times: its vCPU sweep is at 256 MiB.
    Sweep("vcpus", (1, 4, 16), replace(DIRTY_LOG_BASE, mem_mib=256)),
    Sweep("mem_mib", (256, 1024), DIRTY_LOG_BASE),
    Sweep("delay_ms", (100, 1000), DIRTY_LOG_BASE),
)
QUICK_SWEEPS = (
    Sweep("vcpus", (1, 2, 4), Point(SELFTEST, 2, 16, 10)),
    Sweep("vcpus", (1, 2), Point(DIRTY_LOG, 1, 16, 100)),
)


def grid(quick: bool) -> tuple[tuple[Sweep, ...], list[Point], list[Point]]:
    """The sweeps, their base points (replayed as the representative runs) and the others."""
    sweeps = QUICK_SWEEPS if quick else SWEEPS
    bases = [s.anchor for s in QUICK_SWEEPS] if quick else [SELFTEST_BASE, DIRTY_LOG_BASE]
    others = {p: None for s in sweeps for p in s.points() if p not in bases}
    return sweeps, bases, list(others)


def replay_in(trace_path: Path, mode: str, engine: str) -> Any:
    """Replay a trace with every VM in ``mode``, all three policies in one read."""
    from replay.run.driver import run_policies
    from replay.trace.reader import open_trace
    from replay.trace.schema import TraceMeta

    trace = open_trace(trace_path)
    m = trace.meta
    vms = tuple(replace(vm, mmu_mode=mode) for vm in m.vms)
    trace = replace(
        trace, meta=TraceMeta(vms, m.coverage, m.provenance, m.observed, m.schema_version)
    )
    return run_policies(trace, POLICIES, engine=engine)  # type: ignore[arg-type]


def row_of(
    point: Point, mode: str, totals: dict[str, Any], wall_s: float, *, base: bool = False
) -> dict[str, Any]:
    """One table row: the point, the mode, and the policy's totals (MODEL.md rule 19)."""
    attr = totals["faults_by_attribution"]
    stall = totals["stall_ns_by_attribution"]
    shrinker_ns = stall["zapped_page_tables"] + stall["cache_eviction"] + totals["scan_flush_ns"]
    per_page = totals["stall_per_freed_page"]
    return {
        "scenario": point.scenario,
        "point": point.name,
        "base": base,
        "vcpus": point.vcpus,
        "mem_mib": point.mem_mib,
        "delay_ms": point.delay_ms,
        "mode": mode,
        "policy": totals["policy"],
        "accesses": totals["accesses"],
        "faults": totals["faults"],
        "faults_none": attr["none"],
        "faults_cache_eviction": attr["cache_eviction"],
        "faults_zapped_page_tables": attr["zapped_page_tables"],
        "scan_calls": totals["scan_calls"],
        "pages_freed": totals["pages_freed"],
        "mib_freed": totals["pages_freed"] * 4 / 1024,
        "pages_refilled": totals["pages_refilled"],
        "shrinker_stall_ns": int(shrinker_ns),
        "stall_per_freed_page_ns": None if per_page is None else float(per_page),
        "replay_wall_s": round(wall_s, 3),
    }


def run_point(point: Point, workdir: Path, engine: str) -> list[dict[str, Any]]:
    """Generate one point's trace, replay it in both modes, keep only the totals."""
    from replay.run.summary import summarize
    from replay.synth import generate, load_scenario

    trace = workdir / f"{point.name}.parquet"
    generate(load_scenario(point.scenario, variables=point.variables()), trace)
    rows = []
    try:
        for mode in MODES:
            t0 = time.perf_counter()
            rep = replay_in(trace, mode, engine)
            wall = time.perf_counter() - t0
            for run in rep.runs:
                totals = summarize(rep, run)["totals"]
                totals["policy"] = run.policy
                rows.append(row_of(point, mode, totals, wall))
    finally:
        trace.unlink(missing_ok=True)
    return rows


def representative(out: Path, base: Point, engine: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """The base point's runs in each MMU mode, written as ``replay run`` does, and reported.

    Returns the base point's table rows and, per mode, the title and body of its report.
    """
    from replay.report import write_report
    from replay.run.load import load_run
    from replay.run.outputs import write_runs
    from replay.synth import generate, load_scenario

    trace = out / "runs" / f"{base.scenario}.parquet"
    trace.parent.mkdir(parents=True, exist_ok=True)
    generate(load_scenario(base.scenario, variables=base.variables()), trace)
    rows, sections = [], []
    for mode in MODES:
        folder = out / "runs" / f"{base.scenario}-{mode}"
        t0 = time.perf_counter()
        docs = write_runs(replay_in(trace, mode, engine), folder)
        wall = time.perf_counter() - t0
        rows += [
            row_of(base, mode, {**d["totals"], "policy": d["policy"]}, wall, base=True)
            for d in docs
        ]
        page = folder / "report.html"
        write_report([load_run(folder / d["policy"]) for d in docs], page)
        title = f"{LABEL[base.scenario]}: {base.name}, {mode}"
        sections.append((title, embed_report(page.read_text(), f"{base.scenario}-{mode}")))
    return rows, sections


def embed_report(html: str, prefix: str) -> str:
    """A ``replay report`` page's body, headings one level down and ids made unique."""
    body = html[html.index("<body>") + len("<body>") : html.rindex("</body>")]
    for level in (3, 2, 1):
        body = body.replace(f"<h{level}>", f"<h{level + 1}>").replace(
            f"</h{level}>", f"</h{level + 1}>"
        )
    return body.replace('id="', f'id="{prefix}-')


def write_table(rows: list[dict[str, Any]], out: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    with (out / "sweep.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    pq.write_table(pa.Table.from_pylist(rows), out / "sweep.parquet")


SERIES = (
    ("zap", "tdp_mmu"),
    ("zap", "shadow_direct"),
    ("cache", "tdp_mmu"),
    ("cache", "shadow_direct"),
)
"""The (policy, mode) lines drawn; ``none`` frees nothing and causes nothing, so it has none."""
COLOUR = {"zap": "#c0392b", "cache": "#2471a3"}
STYLE = {"tdp_mmu": "-", "shadow_direct": "--"}
METRICS = (
    ("mib_freed", "memory freed by the shrinker (MiB)"),
    ("shrinker_faults", "faults the shrinker caused"),
    ("stall_per_page_us", "est. guest stall per freed page (us)"),
)
OPTION_LABEL = {"vcpus": "vCPUs -v", "mem_mib": "memory per vCPU -b (MiB)"}
HELD = {"vcpus": "-v {}", "mem_mib": "-b {} MiB"}
HELD_DELAY = {SELFTEST: "-d {} ms", DIRTY_LOG: "period {} ms"}


def metric(row: dict[str, Any], name: str) -> float:
    """A plotted value of a table row; NaN where it is undefined (nothing freed)."""
    if name == "shrinker_faults":
        return float(row["faults_cache_eviction"] + row["faults_zapped_page_tables"])
    if name == "stall_per_page_us":
        per = row["stall_per_freed_page_ns"]
        return float("nan") if per is None else per / 1e3
    return float(row[name])


def sweep_figure(rows: list[dict[str, Any]], sweeps: list[Sweep]) -> Any:
    """Metrics (rows of panels) against each option moved alone (columns), per policy and mode."""
    from matplotlib.figure import Figure

    scenario = sweeps[0].anchor.scenario
    width = max(3.6 * len(sweeps), 7.2) + 0.6
    fig = Figure(figsize=(width, 8.6), dpi=110, layout="constrained")
    axes = fig.subplots(len(METRICS), len(sweeps), squeeze=False)
    fig.suptitle(f"{LABEL[scenario]}\none option moved at a time from the defaults")
    for col, sweep in enumerate(sweeps):
        option = sweep.option
        for policy, mode in SERIES:
            line = sorted(
                (r for r in rows if sweep.holds(r) and r["policy"] == policy and r["mode"] == mode),
                key=lambda r: r[option],
            )
            for row, (name, _) in enumerate(METRICS):
                axes[row][col].plot(
                    [r[option] for r in line],
                    [metric(r, name) for r in line],
                    STYLE[mode],
                    marker="o",
                    ms=4,
                    color=COLOUR[policy],
                    label=f"{policy}, {mode}",
                    clip_on=False,  # a line at 0 (zap on the TDP MMU) stays visible on the axis
                    zorder=3,
                )
        _label_column(axes, col, sweep)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(SERIES), fontsize=9)
    return fig


def _label_column(axes: Any, col: int, sweep: Sweep) -> None:
    """Ticks at the sweep's values, the option's name under the column, metrics on the left."""
    anchor = sweep.anchor
    held = ", ".join(
        HELD.get(o, HELD_DELAY[anchor.scenario]).format(getattr(anchor, o))
        for o in OPTIONS
        if o != sweep.option
    )
    xlabel = OPTION_LABEL.get(sweep.option, DELAY_LABEL[anchor.scenario])
    from matplotlib.ticker import MaxNLocator

    for row, (name, title) in enumerate(METRICS):
        ax = axes[row][col]
        if name == "shrinker_faults":
            ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        if not any(np.nan_to_num(line.get_ydata()).any() for line in ax.get_lines()):
            # A made-up scale under lines at 0 says nothing: say it in words.
            ax.set_ylim(0, 1)
            ax.set_yticks([0])
            ax.text(
                0.5, 0.5, "0 in every replay", transform=ax.transAxes, ha="center", color="#555"
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(sweep.values, [f"{v:g}" for v in sweep.values])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.set_ylim(bottom=0)
        if col == 0:
            ax.set_ylabel(title, fontsize=9)
        if row == 0:
            ax.set_title(f"at {held}", fontsize=9)
        if row == len(METRICS) - 1:
            ax.set_xlabel(xlabel)


def figures(rows: list[dict[str, Any]], sweeps: tuple[Sweep, ...]) -> list[tuple[str, str, bytes]]:
    """The sweep's plots as (name, caption, PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    out = []
    for scenario in (SELFTEST, DIRTY_LOG):
        fig = sweep_figure(rows, [w for w in sweeps if w.anchor.scenario == scenario])
        buf = io.BytesIO()
        fig.savefig(buf, format="png", metadata={"Software": None})
        caption = (
            f"{LABEL[scenario]}: memory freed, faults the shrinker caused (zap: on zapped page "
            "tables; cache: refilling emptied caches) and estimated stall per freed page, as "
            "each option moves alone from the defaults. Solid: TDP MMU; dashed: shadow_direct. "
            "Policy none frees nothing and causes nothing; a missing stall point means nothing "
            "was freed."
        )
        out.append((f"study-{scenario}", caption, buf.getvalue()))
    return out


def _base(rows: list[dict[str, Any]], scenario: str, mode: str, policy: str) -> dict[str, Any]:
    return next(
        r
        for r in rows
        if r["scenario"] == scenario and r["base"] and r["mode"] == mode and r["policy"] == policy
    )


def _per_page(row: dict[str, Any]) -> str:
    per = row["stall_per_freed_page_ns"]
    return "undefined (nothing freed)" if per is None else f"{per / 1e3:,.1f} us per freed page"


def _calls(row: dict[str, Any]) -> str:
    n = row["scan_calls"]
    return f"{n} scan call{'' if n == 1 else 's'}"


def headline(rows: list[dict[str, Any]]) -> list[str]:
    """The study's answer, one sentence per scenario and MMU mode, from the base points."""
    out = []
    for scenario in (SELFTEST, DIRTY_LOG):
        for mode in MODES:
            cache = _base(rows, scenario, mode, "cache")
            zap = _base(rows, scenario, mode, "zap")
            out.append(
                f"{LABEL[scenario]} ({cache['point']}, {mode}): cache frees "
                f"{cache['pages_freed']:,} pages ({cache['mib_freed']:.2f} MiB) in "
                f"{_calls(cache)} and causes {cache['faults_cache_eviction']:,} "
                f"cache-eviction faults, {_per_page(cache)}; zap frees {zap['pages_freed']:,} "
                f"pages in {_calls(zap)} and causes "
                f"{zap['faults_zapped_page_tables']:,} faults on zapped page tables, "
                f"{_per_page(zap)}; out of {cache['faults']:,} faults in all."
            )
    return out


TABLE_COLUMNS = (
    ("point", "point"),
    ("mode", "MMU"),
    ("policy", "policy"),
    ("accesses", "accesses"),
    ("faults", "faults"),
    ("faults_zapped_page_tables", "zapped p.t."),
    ("faults_cache_eviction", "cache evict."),
    ("scan_calls", "scans"),
    ("pages_freed", "pages freed"),
    ("pages_refilled", "pages refilled"),
    ("shrinker_stall_ns", "shrinker stall (ns)"),
    ("stall_per_freed_page_ns", "stall / freed page (ns)"),
)


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return html_escape(str(value))


def html_escape(text: str) -> str:
    import html

    return html.escape(text, quote=True)


def sweep_table(rows: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{html_escape(t)}</th>" for _, t in TABLE_COLUMNS)
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(r[k])}</td>" for k, _ in TABLE_COLUMNS) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_page(
    out: Path,
    rows: list[dict[str, Any]],
    sections: list[Any],
    sweeps: tuple[Sweep, ...],
    wall_s: float,
) -> None:
    """``study.html`` (self-contained) and the sweep's PNGs beside it."""
    from replay.report.html import CSS

    order = {SELFTEST: 0, DIRTY_LOG: 1}
    rows = sorted(
        rows,
        key=lambda r: (
            order[r["scenario"]],
            not r["base"],
            r["vcpus"],
            r["mem_mib"],
            r["delay_ms"],
            MODES.index(r["mode"]),
            POLICIES.index(r["policy"]),
        ),
    )
    figs = figures(rows, sweeps)
    quick = " (the --quick grid)" if sweeps is QUICK_SWEEPS else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>kvm-mmu-replay: the series' own experiments, replayed</title>",
        f"<style>{CSS}</style></head><body>",
        "<h1>The series' own experiments, replayed</h1>",
        '<p>The two experiments of "KVM: x86/mmu: Repurpose MMU shrinker into page cache '
        'shrinker" (Sept/Oct 2024), as the shipped scenarios <code>selftest-mmu-shrinker</code> '
        "and <code>dirty-log-perf-drop-caches</code> (their headers cite every value's source "
        "and mark the guesses), replayed under <code>zap</code> (kernels to 6.12), "
        "<code>none</code> (6.13+) and <code>cache</code> (the series) on the TDP MMU and on "
        "shadow_direct. Every stall is an estimate of the cost model, not a measurement.</p>",
        "<h2>Headline (each scenario's defaults)</h2><ul>",
        *(f"<li>{html_escape(h)}</li>" for h in headline(rows)),
        "</ul>",
        f'<p class="note">{len(rows)} replays ({len(rows) // 6} points x 2 MMU modes x 3 '
        f"policies) in {wall_s:.0f} s{quick}. Rerun: "
        "<code>python scripts/study_series.py -o study-series</code>.</p>",
        "<h2>The sweep</h2>",
    ]
    for name, caption, png in figs:
        (out / f"{name}.png").write_bytes(png)
        data = base64.b64encode(png).decode("ascii")
        parts.append(
            f'<figure id="{name}"><img alt="{html_escape(caption)}" '
            f'src="data:image/png;base64,{data}"><figcaption>{html_escape(caption)} '
            f"(also <code>{name}.png</code>)</figcaption></figure>"
        )
    parts += ["<h2>Every replay of the sweep</h2>", sweep_table(rows)]
    for title, body in sections:
        parts += [f"<h2>{html_escape(title)}</h2>", body]
    parts.append("</body></html>\n")
    (out / "study.html").write_text("\n".join(parts))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("study-series"))
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--engine", choices=("fast", "reference"), default="fast")
    parser.add_argument("--quick", action="store_true", help="a tiny grid: a smoke test")
    parser.add_argument("--force", action="store_true", help="replace an existing output")
    args = parser.parse_args(argv)
    out: Path = args.output
    if out.exists() and not args.force:
        print(
            f"error: {out} exists; pass --force to replace it or choose another -o", file=sys.stderr
        )
        return 1
    if args.jobs < 1:
        print(f"error: --jobs {args.jobs} must be >= 1", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    # Written in place, so that the runs name their traces where they stay; a failed study
    # leaves nothing behind, and a replaced one comes back.
    old = out.with_name(f".{out.name}.{os.getpid()}.old") if out.exists() else None
    if old is not None:
        out.rename(old)
    try:
        out.mkdir(parents=True)
        sweeps, bases, others = grid(args.quick)
        rows, sections = _study(out, bases, others, args)
        write_table(rows, out)
        write_page(out, rows, sections, sweeps, time.perf_counter() - t0)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old)
    print(f"wrote {out / 'study.html'} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


def _study(
    out: Path, bases: list[Point], others: list[Point], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[Any]]:
    work = out / "traces"
    work.mkdir()
    rows: list[dict[str, Any]] = []
    sections: list[Any] = []
    with ProcessPoolExecutor(args.jobs) as pool:
        # The base points are the representative runs: replayed once, written and reported.
        reps = [pool.submit(representative, out, b, args.engine) for b in bases]
        futures = [pool.submit(run_point, p, work, args.engine) for p in others]
        for fut in reps:
            base_rows, base_sections = fut.result()
            rows.extend(base_rows)
            sections.extend(base_sections)
        for i, point_fut in enumerate(futures):
            rows.extend(point_fut.result())
            print(f"  point {i + 1}/{len(others)}: {others[i].name}", file=sys.stderr)
    work.rmdir()
    return rows, sections


if __name__ == "__main__":
    sys.exit(main())
