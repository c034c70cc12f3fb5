"""The policy comparison table: the rows ``replay run`` prints and ``replay report`` shows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from replay.mmu.config import CAUSES

if TYPE_CHECKING:
    from collections.abc import Callable

TITLE = "Policies side by side (stall figures are estimates)"


def count(value: Any) -> str:
    """A count with thousands separators; ``undefined`` for null."""
    if value is None:
        return "undefined"
    if isinstance(value, float):
        return f"{value:,.0f}"
    return f"{value:,}"


def ms(ns: int) -> str:
    """A duration in ms (µs below 1 ms)."""
    if ns and ns < 1_000_000:
        return f"{ns / 1e3:,.1f} µs"
    return f"{ns / 1e6:,.1f} ms"


def _per_freed(v: float | None) -> str:
    return "undefined (nothing freed)" if v is None else f"{v:,.0f} ns"


def _rows() -> list[tuple[str, Callable[[dict[str, Any]], Any], Callable[[Any], str]]]:
    attr = "faults_by_attribution"
    stall = "stall_ns_by_attribution"
    return [
        ("accesses", lambda t: t["accesses"], count),
        ("faults", lambda t: t["faults"], count),
        ("  zapped page tables", lambda t: t[attr]["zapped_page_tables"], count),
        ("  cache eviction", lambda t: t[attr]["cache_eviction"], count),
        ("  neither", lambda t: t[attr]["none"], count),
        *(
            (f"  cause {cause}", lambda t, c=cause: t["faults_by_cause"][c], count)
            for cause in CAUSES
        ),
        ("refills natural", lambda t: t["refills_by_kind"]["natural"], count),
        ("refills after shrinker", lambda t: t["refills_by_kind"]["shrinker"], count),
        ("pages refilled", lambda t: t["pages_refilled"], count),
        (
            "SPs allocated / relinked",
            lambda t: (t["sps_allocated"], t["sps_relinked"]),
            lambda v: f"{v[0]:,} / {v[1]:,}",
        ),
        ("pages freed by shrinker", lambda t: t["pages_freed"], count),
        ("scan calls", lambda t: t["scan_calls"], count),
        ("peak SP pages", lambda t: t["peak_sp_pages"], count),
        ("peak cache pages", lambda t: t["peak_cache_pages"], count),
        ("est. stall, zapped tables", lambda t: t[stall]["zapped_page_tables"], ms),
        ("est. stall, cache eviction", lambda t: t[stall]["cache_eviction"], ms),
        ("est. TLB flushes of scans", lambda t: t["scan_flush_ns"], ms),
        ("est. stall per freed page", lambda t: t["stall_per_freed_page"], _per_freed),
    ]


def policy_rows(docs: list[dict[str, Any]]) -> list[tuple[str, list[str]]]:
    """Each row's label and one cell per run summary in ``docs``, formatted for people."""
    rows = [(label, [fmt(get(d["totals"])) for d in docs]) for label, get, fmt in _rows()]
    rows.append(("engine time", [f"{d['wall_s']:.2f} s ({d['engine']})" for d in docs]))
    return rows
