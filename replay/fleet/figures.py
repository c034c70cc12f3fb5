"""The fleet's key figures: distributions across traces, the worst traces, the frontier.

All are computed from the fleet table (:mod:`replay.fleet.table`), so ``fleet.json``, the
terminal tables, ``replay report FLEET_DIR`` and ``replay diff FLEET_A FLEET_B`` agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from replay.mmu.config import ATTRIBUTIONS

if TYPE_CHECKING:
    import polars as pl

QUANTILES = (("min", 0.0), ("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("max", 100.0))
WORST = 10


def key_figures() -> list[tuple[str, str]]:
    """``(name, label)`` of each figure whose distribution across traces the fleet shows."""
    short = {"zapped_page_tables": "zapped tables", "cache_eviction": "cache eviction"}
    return [
        *(
            (f"faults_per_m_accesses.{a}", f"faults per M accesses, {short.get(a, 'neither')}")
            for a in reversed(ATTRIBUTIONS)
        ),
        ("pages_freed", "pages freed by the shrinker"),
        ("stall_per_freed_page", "est. stall per freed page (ns)"),
        ("shrinker_stall_ns", "est. shrinker stall (ns)"),
    ]


def with_figures(table: pl.DataFrame) -> pl.DataFrame:
    """The table's successful rows, with the per-million fault rates added."""
    import polars as pl

    ok = table.filter(pl.col("status") == "ok")
    if ok.is_empty():
        return ok
    per_m = [
        (pl.col(f"faults_by_attribution.{a}") * 1e6 / pl.col("accesses")).alias(
            f"faults_per_m_accesses.{a}"
        )
        for a in ATTRIBUTIONS
    ]
    return ok.with_columns(per_m)


def distribution(values: list[float]) -> dict[str, float | int | None]:
    """min, p50, p90, p99 and max of ``values`` (None where nothing is defined), and n."""
    if not values:
        return {name: None for name, _ in QUANTILES} | {"n": 0}
    arr = np.asarray(values, dtype=np.float64)
    out: dict[str, float | int | None] = {
        name: round(float(np.percentile(arr, q)), 3) for name, q in QUANTILES
    }
    out["n"] = len(values)
    return out


def distributions(table: pl.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """Per sweep point and policy, each key figure's distribution across the fleet's traces."""
    rows = with_figures(table)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if rows.is_empty():
        return out
    for point in _unique(rows["point"]):
        at_point = rows.filter(rows["point"] == point)
        out[point] = {}
        for policy in _unique(at_point["policy"]):
            sub = at_point.filter(at_point["policy"] == policy)
            out[point][policy] = {
                name: distribution([v for v in sub[name].to_list() if v is not None])
                for name, _ in key_figures()
            }
    return out


def worst(table: pl.DataFrame, n: int = WORST) -> list[dict[str, Any]]:
    """The ``n`` (trace, sweep point, policy) rows with the largest estimated shrinker stall."""
    rows = with_figures(table)
    if rows.is_empty():
        return []
    top = rows.sort(
        ["shrinker_stall_ns", "trace", "point", "policy"], descending=[True, False, False, False]
    ).head(n)
    return [
        {
            "trace": r["trace"],
            "fingerprint": r["fingerprint"],
            "point": r["point"],
            "policy": r["policy"],
            "shrinker_stall_ns": r["shrinker_stall_ns"],
            "pages_freed": r["pages_freed"],
            "stall_per_freed_page": r["stall_per_freed_page"],
            "faults_zapped_page_tables": r["faults_by_attribution.zapped_page_tables"],
            "faults_cache_eviction": r["faults_by_attribution.cache_eviction"],
            "run": run_folder(r["trace"], r["fingerprint"], r["point"], r["policy"]),
        }
        for r in top.iter_rows(named=True)
    ]


def run_folder(trace: str, fingerprint: str, point: str, policy: str) -> str:
    """A run's folder relative to the fleet folder."""
    short = fingerprint.removeprefix("sha256:")[:12]
    return f"runs/{trace}-{short}/{point}/{policy}"


def frontier(table: pl.DataFrame) -> list[dict[str, Any]]:
    """For each trace and policy of a sweep, its Pareto-optimal points.

    A point is on the frontier when no other point of the same trace and policy frees at least
    as many pages with at most as much estimated shrinker stall, and is better in one of the
    two: the settings that free the most memory for the least stall.
    """
    rows = with_figures(table)
    if rows.is_empty() or rows["point"].n_unique() < 2:
        return []
    out = []
    for (trace, fp, policy), sub in rows.group_by(
        ["trace", "fingerprint", "policy"], maintain_order=True
    ):
        pts = [
            (str(r["point"]), int(r["pages_freed"]), int(r["shrinker_stall_ns"]))
            for r in sub.iter_rows(named=True)
        ]
        optimal = [
            p
            for p in pts
            if not any(q[1] >= p[1] and q[2] <= p[2] and (q[1] > p[1] or q[2] < p[2]) for q in pts)
        ]
        out.append(
            {
                "trace": trace,
                "fingerprint": fp,
                "policy": policy,
                "points": [
                    {"point": p[0], "pages_freed": p[1], "shrinker_stall_ns": p[2]}
                    for p in sorted(optimal, key=lambda p: (p[1], p[2], p[0]))
                ],
            }
        )
    return out


def _unique(column: pl.Series) -> list[str]:
    """The column's values in their first order of appearance."""
    return [str(v) for v in column.unique(maintain_order=True).to_list()]
