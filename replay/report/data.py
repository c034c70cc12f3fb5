"""What a report plots, read from run directories and aggregated first.

Every series is reduced before plotting: the timeline to at most :data:`MAX_BUCKETS` buckets,
the fault costs to one count per distinct cost (a CDF of millions of faults is a few dozen
steps), the cache levels to the busiest vCPUs. A report of a 50-million-access run reads a few
columns and plots a few thousand points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.run.load import RunDir, load_run, runs_in

if TYPE_CHECKING:
    from pathlib import Path

MAX_BUCKETS = 1500
"""Timeline buckets plotted at most per run; longer timelines are merged into wider buckets."""
BUSIEST_VCPUS = 4
"""vCPUs shown in the cache occupancy plot (by accesses)."""
POLICY_ORDER = ("zap", "none", "cache")


@dataclass(frozen=True)
class RunSeries:
    """One run, reduced to what the plots and tables need."""

    run: RunDir
    t0_ns: int
    bucket_ns: int
    timeline: dict[str, np.ndarray]
    scan_t_s: np.ndarray
    scan_freed: np.ndarray
    cost_values_ns: np.ndarray
    cost_counts: np.ndarray
    vcpu_cache: list[tuple[str, np.ndarray, np.ndarray]]
    """(``vm/vcpu`` label, times in s, level from that time on) of the busiest vCPUs."""

    @property
    def label(self) -> str:
        """The run's name in legends."""
        return self.run.label

    @property
    def totals(self) -> dict[str, Any]:
        """``summary.json``'s totals."""
        totals: dict[str, Any] = self.run.summary["totals"]
        return totals

    def t_s(self) -> np.ndarray:
        """Bucket start times in seconds from the trace's first event."""
        t: np.ndarray = (self.timeline["t_start_ns"] - self.t0_ns) / 1e9
        return t

    @property
    def bucket_s(self) -> float:
        """Width of a (possibly merged) bucket, in seconds."""
        return self.bucket_ns / 1e9


def expand(paths: list[Path]) -> list[RunDir]:
    """Run folders; a folder holding runs (``runs/quick``) stands for all of them."""
    runs: list[RunDir] = []
    for path in paths:
        inner = runs_in(path)
        if inner:
            inner.sort(
                key=lambda p: (
                    POLICY_ORDER.index(p.name) if p.name in POLICY_ORDER else len(POLICY_ORDER),
                    p.name,
                )
            )
            runs += [load_run(p) for p in inner]
        else:
            runs.append(load_run(path))
    return runs


def _merge(timeline: dict[str, np.ndarray], factor: int) -> dict[str, np.ndarray]:
    """Merge every ``factor`` buckets into one: counters add up, levels keep the last value."""
    levels = {"sp_pages", "cache_pages"}
    n = len(timeline["t_start_ns"])
    starts = np.arange(0, n, factor)
    out = {}
    for name, values in timeline.items():
        if name == "t_start_ns":
            out[name] = values[starts]
        elif name in levels:
            out[name] = values[np.minimum(starts + factor - 1, n - 1)]
        else:
            out[name] = np.add.reduceat(values, starts)
    return out


def _read_table(run: RunDir, name: str, columns: list[str] | None = None) -> Any:
    """A run file, checked to be this run's (its stamp, columns and types) and read."""
    return run.table(name, columns)


def load_series(run: RunDir) -> RunSeries:
    """Read and reduce one run."""
    import polars as pl

    bucket_ns = int(run.summary["config"]["bucket_ns"])
    t0 = int(run.summary["trace"].get("t_first_ns") or 0)
    tl_table = _read_table(run, "timeline.parquet")
    timeline = {name: tl_table.column(name).to_numpy() for name in tl_table.column_names}
    factor = max(1, -(-len(timeline["t_start_ns"]) // MAX_BUCKETS))
    if factor > 1:
        timeline = _merge(timeline, factor)
    scans = _read_table(run, "scans.parquet", ["t_ns", "freed"])
    scan_t = (scans.column("t_ns").to_numpy() - t0) / 1e9
    costs = (
        pl.DataFrame(_read_table(run, "faults.parquet", ["est_ns"]))
        .group_by("est_ns")
        .len()
        .sort("est_ns")
    )
    return RunSeries(
        run=run,
        t0_ns=t0,
        bucket_ns=bucket_ns * factor,
        timeline=timeline,
        scan_t_s=np.asarray(scan_t, dtype=np.float64),
        scan_freed=scans.column("freed").to_numpy().astype(np.int64),
        cost_values_ns=costs["est_ns"].to_numpy(),
        cost_counts=costs["len"].to_numpy(),
        vcpu_cache=_busiest_cache(run, t0, bucket_ns),
    )


def _busiest_cache(
    run: RunDir, t0: int, bucket_ns: int
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Cache levels of the vCPUs with most accesses; a level holds from its bucket's end."""
    per_vcpu = run.summary["per_vcpu"]
    busiest = sorted(per_vcpu, key=lambda k: (-per_vcpu[k].get("accesses", 0), k))
    busiest = busiest[:BUSIEST_VCPUS]
    table = _read_table(run, "vcpu_cache.parquet")
    vm = table.column("vm").to_numpy()
    vcpu = table.column("vcpu").to_numpy()
    t = table.column("t_start_ns").to_numpy()
    level = table.column("cache_pages").to_numpy()
    out = []
    for key in busiest:
        v, c = (int(x) for x in key.split("/"))
        mine = (vm == v) & (vcpu == c)
        out.append((key, (t[mine] + bucket_ns - t0) / 1e9, level[mine]))
    return out
