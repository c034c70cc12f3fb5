"""What every run reports (MODEL.md rule 19), computed from the engine's rows and logs.

Everything here is derived from the fault table, the scan table and the two removal logs, so
both engines' summaries agree whenever their rows do.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from replay.mmu.config import ATTRIBUTIONS, CAUSES, REFILLS, Attribution, Cause, CostModel

if TYPE_CHECKING:
    from replay.mmu.results import EngineResult
    from replay.run.driver import PolicyRun, Replay

TIMELINE_COLUMNS = (
    "t_start_ns",
    "accesses",
    "faults",
    "faults_zapped_page_tables",
    "faults_cache_eviction",
    "faults_none",
    "mmio",
    "pages_refilled",
    "sps_allocated",
    "pages_freed",
    "scan_calls",
    "reclaim_passes",
    "stall_ns",
    "sp_pages",
    "cache_pages",
)


def refill_part_ns(faults: dict[str, np.ndarray], costs: CostModel) -> np.ndarray:
    """The refill share of each fault's ``est_ns`` (rule 31): pages refilled x the rate used."""
    flush = np.where(faults["recycled_sps"] > 0, costs.zap_flush_ns, 0)
    base = np.where(
        faults["cause"] == Cause.MMIO,
        costs.fault_base_ns,
        costs.fault_base_ns + costs.sp_alloc_ns * faults["new_sps"].astype(np.int64),
    )
    part: np.ndarray = faults["est_ns"] - base - flush
    return part


def _counts(codes: np.ndarray, names: tuple[str, ...]) -> dict[str, int]:
    got = np.bincount(codes.astype(np.int64), minlength=len(names))
    return {name: int(got[i]) for i, name in enumerate(names)}


def _peak(rows: np.ndarray, deltas: np.ndarray) -> int:
    """Largest running total after any event, events ordered by trace row (ties: one event)."""
    if not len(rows):
        return 0
    order = np.argsort(rows, kind="stable")
    rows, deltas = rows[order], deltas[order]
    running = np.cumsum(deltas)
    last_of_row = np.r_[rows[1:] != rows[:-1], True]
    return int(max(0, running[last_of_row].max()))


def _stall(faults: dict[str, np.ndarray], costs: CostModel) -> dict[str, int]:
    """Rule 31: estimated stall by attribution."""
    attr = faults["attribution"]
    zapped = attr == Attribution.ZAPPED_PAGE_TABLES
    evicted = attr == Attribution.CACHE_EVICTION
    return {
        "zapped_page_tables": int(faults["est_ns"][zapped].sum()),
        "cache_eviction": int(refill_part_ns(faults, costs)[evicted].sum()),
        "none": int(faults["est_ns"][attr == Attribution.NONE].sum()),
    }


def _group(faults: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[mask] for k, v in faults.items()}


def _fault_block(faults: dict[str, np.ndarray], costs: CostModel) -> dict[str, Any]:
    return {
        "faults": len(faults["row"]),
        "faults_by_attribution": _counts(faults["attribution"], ATTRIBUTIONS),
        "faults_by_cause": _counts(faults["cause"], CAUSES),
        "refills_by_kind": _counts(faults["refill"], REFILLS),
        "pages_refilled": int(faults["pages_refilled"].sum()),
        "sps_allocated": int(faults["new_sps"].sum()),
        "sps_relinked": int(faults["relinked_sps"].sum()),
        "sps_recycled": int(faults["recycled_sps"].sum()),
        "stall_ns_by_attribution": _stall(faults, costs),
    }


def _per_freed(stall: dict[str, int], flush_ns: int, freed: int) -> float | None:
    if freed == 0:
        return None
    return (stall["zapped_page_tables"] + stall["cache_eviction"] + flush_ns) / freed


def summarize(replay: Replay, run: PolicyRun) -> dict[str, Any]:
    """The ``totals``, ``per_vm`` and ``per_vcpu`` blocks of ``summary.json``."""
    res: EngineResult = run.result
    costs = replay.costs
    f = res.faults
    counts = replay.counts
    scans = res.scans
    freed = sum(s.freed for s in scans)
    flush_ns = sum(s.flush_ns for s in scans)

    rem = np.array(res.sp_removals, dtype=np.int64).reshape(-1, 4)
    frees = np.array(res.cache_frees, dtype=np.int64).reshape(-1, 5)
    sp_rows = np.concatenate([f["row"], rem[:, 0]])
    sp_delta = np.concatenate([f["new_sps"].astype(np.int64), -rem[:, 3]])
    sp_vm = np.concatenate([f["vm"].astype(np.int64), rem[:, 2]])
    cache_rows = np.concatenate([f["row"], frees[:, 0]])
    cache_delta = np.concatenate(
        [f["pages_refilled"].astype(np.int64) - f["new_sps"].astype(np.int64), -frees[:, 4]]
    )
    cache_vm = np.concatenate([f["vm"].astype(np.int64), frees[:, 2]])
    cache_vcpu = np.concatenate([f["vcpu"].astype(np.int64), frees[:, 3]])

    totals = _fault_block(f, costs)
    accesses = sum(counts.accesses.values())
    totals.update(
        accesses=accesses,
        hits=accesses - totals["faults"],
        pages_freed=freed,
        scan_calls=len(scans),
        scan_flush_ns=flush_ns,
        reclaim_passes_by_source=counts.reclaim_by_source,
        peak_sp_pages=_peak(sp_rows, sp_delta),
        peak_cache_pages=_peak(cache_rows, cache_delta),
        stall_per_freed_page=_per_freed(totals["stall_ns_by_attribution"], flush_ns, freed),
        nr_deferred_final=res.nr_deferred,
    )

    per_vm: dict[str, Any] = {}
    per_vcpu: dict[str, Any] = {}
    for vm in replay.trace.meta.vms:
        mine = f["vm"] == vm.id
        block = _fault_block(_group(f, mine), costs)
        vm_freed = sum(
            fr for s in scans for v, fr in zip(s.vms, s.freed_by_vm, strict=True) if v == vm.id
        )
        vm_flush = sum(s.flush_ns for s in scans if vm.id in s.vms)
        block.update(
            name=vm.name,
            mmu_mode=vm.mmu_mode,
            accesses=sum(counts.accesses[(vm.id, c)] for c in range(vm.vcpus)),
            pages_freed=vm_freed,
            scan_calls=sum(1 for s in scans if vm.id in s.vms),
            peak_sp_pages=_peak(sp_rows[sp_vm == vm.id], sp_delta[sp_vm == vm.id]),
            peak_cache_pages=_peak(cache_rows[cache_vm == vm.id], cache_delta[cache_vm == vm.id]),
            stall_per_freed_page=_per_freed(block["stall_ns_by_attribution"], vm_flush, vm_freed),
        )
        per_vm[str(vm.id)] = block
        for c in range(vm.vcpus):
            sel = mine & (f["vcpu"] == c)
            vblock = _fault_block(_group(f, sel), costs)
            in_vcpu = (cache_vm == vm.id) & (cache_vcpu == c)
            vblock.update(
                accesses=counts.accesses[(vm.id, c)],
                pages_freed=int(frees[(frees[:, 2] == vm.id) & (frees[:, 3] == c), 4].sum()),
                peak_cache_pages=_peak(cache_rows[in_vcpu], cache_delta[in_vcpu]),
            )
            per_vcpu[f"{vm.id}/{c}"] = vblock
    return {"totals": totals, "per_vm": per_vm, "per_vcpu": per_vcpu}


def timeline(replay: Replay, run: PolicyRun) -> dict[str, np.ndarray]:
    """Counters per time bucket (``timeline.parquet``); page counts are at each bucket's end."""
    counts = replay.counts
    res = run.result
    f = res.faults
    t0 = counts.t_first_ns or 0
    bucket = counts.bucket_ns
    t_last = counts.t_last_ns if counts.t_last_ns is not None else t0
    n = int((t_last - t0) // bucket) + 1

    def per_bucket(t: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        idx = (np.asarray(t, dtype=np.int64) - t0) // bucket
        got = np.bincount(idx, weights=weights, minlength=n)[:n]
        return np.asarray(np.rint(got), dtype=np.int64)

    def pad(a: np.ndarray) -> np.ndarray:
        return np.concatenate([a, np.zeros(n - len(a), dtype=np.int64)]) if len(a) < n else a

    attr = f["attribution"]
    scan_t = np.array([s.t_ns for s in res.scans], dtype=np.int64)
    scan_freed = np.array([s.freed for s in res.scans], dtype=np.float64)
    ends = t0 + bucket * np.arange(1, n + 1, dtype=np.int64)

    def level_at_ends(t: np.ndarray, rows: np.ndarray, delta: np.ndarray) -> np.ndarray:
        order = np.lexsort((rows, t))
        running = np.cumsum(delta[order])
        k = np.searchsorted(t[order], ends, side="left")
        out = np.where(k > 0, running[np.maximum(k - 1, 0)] if len(running) else 0, 0)
        return np.asarray(out, dtype=np.int64)

    rem = np.array(res.sp_removals, dtype=np.int64).reshape(-1, 4)
    frees = np.array(res.cache_frees, dtype=np.int64).reshape(-1, 5)
    sp_pages = level_at_ends(
        np.concatenate([f["t_ns"], rem[:, 1]]),
        np.concatenate([f["row"], rem[:, 0]]),
        np.concatenate([f["new_sps"].astype(np.int64), -rem[:, 3]]),
    )
    cache_pages = level_at_ends(
        np.concatenate([f["t_ns"], frees[:, 1]]),
        np.concatenate([f["row"], frees[:, 0]]),
        np.concatenate([f["pages_refilled"].astype(np.int64) - f["new_sps"], -frees[:, 4]]),
    )
    mmio = f["cause"] == Cause.MMIO
    return {
        "t_start_ns": t0 + bucket * np.arange(n, dtype=np.int64),
        "accesses": pad(counts.accesses_by_bucket),
        "faults": per_bucket(f["t_ns"]),
        "faults_zapped_page_tables": per_bucket(f["t_ns"][attr == Attribution.ZAPPED_PAGE_TABLES]),
        "faults_cache_eviction": per_bucket(f["t_ns"][attr == Attribution.CACHE_EVICTION]),
        "faults_none": per_bucket(f["t_ns"][attr == Attribution.NONE]),
        "mmio": per_bucket(f["t_ns"][mmio]),
        "pages_refilled": per_bucket(f["t_ns"], f["pages_refilled"].astype(np.float64)),
        "sps_allocated": per_bucket(f["t_ns"], f["new_sps"].astype(np.float64)),
        "pages_freed": per_bucket(scan_t, scan_freed),
        "scan_calls": per_bucket(scan_t),
        "reclaim_passes": pad(counts.reclaim_by_bucket),
        "stall_ns": per_bucket(f["t_ns"], f["est_ns"].astype(np.float64)),
        "sp_pages": sp_pages,
        "cache_pages": cache_pages,
    }
