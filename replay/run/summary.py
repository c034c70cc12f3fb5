"""What every run reports (MODEL.md rule 19): its summary, timeline and cache levels.

They are built from a run's :class:`~replay.run.stats.FaultStats` (fed from the fault rows and
the two removal logs as the replay went), its scan table and the trace's counts, so both
engines' summaries agree whenever their rows do.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.run.fidelity import FAULTS_ONLY, SAMPLED_COVERAGES, sampled_counts, with_fidelity
from replay.run.schema import TIMELINE_COLUMNS
from replay.run.stats import BUCKETED, Blocks, pad, running_within_groups

if TYPE_CHECKING:
    from replay.mmu.config import CostModel
    from replay.mmu.results import EngineResult
    from replay.run.records import PolicyRun, Replay
    from replay.run.stats import FaultStats


def _stall(faults: dict[str, np.ndarray], costs: CostModel) -> dict[str, int]:
    """Rule 31: estimated stall by attribution, over all the faults given."""
    blocks = Blocks(1, costs)
    blocks.add(faults, np.zeros(len(faults["row"]), dtype=np.int64))
    stall: dict[str, int] = blocks.block(0)["stall_ns_by_attribution"]
    return stall


def _per_freed(stall: dict[str, int], flush_ns: int, freed: int) -> float | None:
    if freed == 0:
        return None
    return (stall["zapped_page_tables"] + stall["cache_eviction"] + flush_ns) / freed


def _per_bucket(idx: np.ndarray, n: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Sums of ``weights`` (or counts) over ``n`` buckets, for rows already put in buckets."""
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    got = np.bincount(idx, weights=w, minlength=n)[:n]
    return np.asarray(np.rint(got), dtype=np.int64)


def stats_of(run: PolicyRun) -> FaultStats:
    """The run's fault statistics (fed as its rows were produced), complete."""
    run.stats.end()
    return run.stats


def summarize(replay: Replay, run: PolicyRun) -> dict[str, Any]:
    """The ``totals``, ``per_vm`` and ``per_vcpu`` blocks of ``summary.json``."""
    stats = stats_of(run)
    res: EngineResult = run.result
    counts = replay.counts
    scans = res.scans
    groups = stats.groups
    rem, frees = stats.removals, stats.frees
    by_vm = stats.by_vcpu.rollup(groups.vcpu_base)
    whole = by_vm.rollup(np.zeros(1, dtype=np.int64))
    freed = sum(s.freed for s in scans)
    flush_ns = sum(s.flush_ns for s in scans)
    totals = whole.block(0)
    accesses = sum(counts.accesses.values())
    totals.update(
        accesses=accesses,
        hits=accesses - totals["faults"],
        pages_freed=freed,
        scan_calls=len(scans),
        scan_flush_ns=flush_ns,
        reclaim_passes_by_source=counts.reclaim_by_source,
        peak_sp_pages=int(stats.sp_total.peak[0]),
        peak_cache_pages=int(stats.cache_total.peak[0]),
        stall_per_freed_page=_per_freed(totals["stall_ns_by_attribution"], flush_ns, freed),
        nr_deferred_final=res.nr_deferred,
        sps_zapped=int(rem[:, 3].sum()),
    )
    _, fr_vc = groups.of(frees[:, 2], frees[:, 3])
    vcpu_freed = np.bincount(fr_vc, weights=frees[:, 4], minlength=groups.n_vcpus)
    per_vm: dict[str, Any] = {}
    per_vcpu: dict[str, Any] = {}
    # Per VM over the scan rows in one pass: pages freed, flush cost, calls that listed it.
    vm_freed: Counter[int] = Counter()
    vm_flush: Counter[int] = Counter()
    vm_calls: Counter[int] = Counter()
    for scan in scans:
        for v, fr in zip(scan.vms, scan.freed_by_vm, strict=True):
            vm_freed[v] += fr
        for v in set(scan.vms):
            vm_flush[v] += scan.flush_ns
            vm_calls[v] += 1
    for i, vm in enumerate(groups.vms):
        block = by_vm.block(i)
        block.update(
            name=vm.name,
            mmu_mode=vm.mmu_mode,
            sps_zapped=int(rem[rem[:, 2] == vm.id, 3].sum()),
            accesses=sum(counts.accesses[(vm.id, c)] for c in range(vm.vcpus)),
            pages_freed=vm_freed[vm.id],
            scan_calls=vm_calls[vm.id],
            peak_sp_pages=int(stats.sp_vm.peak[i]),
            peak_cache_pages=int(stats.cache_vm.peak[i]),
            stall_per_freed_page=_per_freed(
                block["stall_ns_by_attribution"], vm_flush[vm.id], vm_freed[vm.id]
            ),
        )
        per_vm[str(vm.id)] = block
        for c in range(vm.vcpus):
            g = int(groups.vcpu_base[i]) + c
            vblock = stats.by_vcpu.block(g)
            vblock.update(
                accesses=counts.accesses[(vm.id, c)],
                pages_freed=int(vcpu_freed[g]),
                peak_cache_pages=int(stats.cache_vcpu.peak[g]),
            )
            per_vcpu[f"{vm.id}/{c}"] = vblock
    coverage = replay.trace.meta.coverage
    if coverage == FAULTS_ONLY:  # every access is a logged fault (D9)
        totals = with_fidelity(totals)
        per_vm = {vm: with_fidelity(block) for vm, block in per_vm.items()}
    elif coverage in SAMPLED_COVERAGES:
        totals, per_vm = _with_sampled(replay, run, totals, per_vm)
    return {"totals": totals, "per_vm": per_vm, "per_vcpu": per_vcpu}


def sampled_faults(replay: Replay, run: PolicyRun) -> tuple[np.ndarray, dict[int, int]]:
    """Times of the run's faults of region rows (MODEL.md rule 35), and their count per VM."""
    times: list[np.ndarray] = []
    by_vm: dict[int, int] = {}
    for chunk in run.sink.chunks(("row", "vm", "t_ns")):
        mask, counts = sampled_counts(chunk["row"], chunk["vm"], replay.counts.region_rows)
        times.append(chunk["t_ns"][mask])
        for vm, n in counts.items():
            by_vm[vm] = by_vm.get(vm, 0) + n
    t = np.concatenate(times) if times else np.zeros(0, dtype=np.int64)
    return t, by_vm


def _with_sampled(
    replay: Replay, run: PolicyRun, totals: dict[str, Any], per_vm: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Blocks of a sampled trace: its sampled faults, and the logged ones' fidelity (D13, D9)."""
    t, by_vm = sampled_faults(replay, run)
    logged = replay.trace.meta.coverage == "faults+sampled"

    def add(block: dict[str, Any], n: int) -> dict[str, Any]:
        block = {**block, "sampled_faults": n}
        return with_fidelity(block, n) if logged else block

    totals = add(totals, len(t))
    # A sampled access that faults is no access of the trace's: hits count logged ones only.
    totals["hits"] = int(totals["accesses"]) - (int(totals["faults"]) - len(t))
    per_vm = {vm: add(block, by_vm.get(int(vm), 0)) for vm, block in per_vm.items()}
    return totals, per_vm


def timeline(replay: Replay, run: PolicyRun) -> dict[str, np.ndarray]:
    """Counters per time bucket (``timeline.parquet``); page counts are at each bucket's end."""
    stats = stats_of(run)
    res, counts = run.result, replay.counts
    t0, bucket = stats.t0, counts.bucket_ns
    t_last = counts.t_last_ns if counts.t_last_ns is not None else t0
    n = int((t_last - t0) // bucket) + 1

    def per_bucket(t: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        return _per_bucket((np.asarray(t, dtype=np.int64) - t0) // bucket, n, weights)

    out = {name: pad(stats.bucketed[name], n)[:n].copy() for name in BUCKETED}
    rem, frees = stats.removals, stats.frees
    sp_change = out.pop("sp_change") - per_bucket(rem[:, 1], rem[:, 3])
    cache_change = out.pop("cache_change") - per_bucket(frees[:, 1], frees[:, 4])
    scan_t = np.array([s.t_ns for s in res.scans], dtype=np.int64)
    out["pages_freed"] = per_bucket(scan_t, np.array([s.freed for s in res.scans]))
    out["scan_calls"] = per_bucket(scan_t)
    out["t_start_ns"] = t0 + bucket * np.arange(n, dtype=np.int64)
    out["accesses"] = pad(counts.accesses_by_bucket, n)[:n]
    out["reclaim_passes"] = pad(counts.reclaim_by_bucket, n)[:n]
    # Logged faults the model replays as hits (fidelity.py): none unless the trace is faults-only.
    unexplained = out["accesses"] - out["faults"]
    if replay.trace.meta.coverage == "faults+sampled":
        unexplained += per_bucket(sampled_faults(replay, run)[0])
    elif replay.trace.meta.coverage != FAULTS_ONLY:
        unexplained[:] = 0
    out["faults_unexplained"] = unexplained
    out["sp_pages"] = np.cumsum(sp_change)
    out["cache_pages"] = np.cumsum(cache_change)
    return {name: out[name] for name in TIMELINE_COLUMNS}


def vcpu_cache_levels(replay: Replay, run: PolicyRun) -> dict[str, np.ndarray]:
    """``vcpu_cache.parquet``: each vCPU's cache level at the end of every bucket it changed.

    Rows are sorted by VM, vCPU and time; a level holds until the vCPU's next row.
    """
    stats = stats_of(run)
    groups = stats.groups
    frees = stats.frees
    _, fr_vc = groups.of(frees[:, 2], frees[:, 3])
    freed_at = (frees[:, 1] - stats.t0) // stats.bucket_ns * groups.n_vcpus + fr_vc
    keys, deltas = stats.vcpu_cache.totals(extra=(freed_at, -frees[:, 4]))
    vcpu_group, bucket = keys % groups.n_vcpus, keys // groups.n_vcpus
    order = np.lexsort((bucket, vcpu_group))
    vcpu_group, bucket, deltas = vcpu_group[order], bucket[order], deltas[order]
    level, _ = running_within_groups(vcpu_group, deltas)
    vm_of_group = np.repeat(
        np.array([vm.id for vm in groups.vms], dtype=np.int64),
        [vm.vcpus for vm in groups.vms],
    )
    return {
        "t_start_ns": stats.t0 + stats.bucket_ns * bucket,
        "vm": vm_of_group[vcpu_group].astype(np.uint16),
        "vcpu": (vcpu_group - groups.vcpu_base[groups.vm_index[vm_of_group[vcpu_group]]]).astype(
            np.uint16
        ),
        "cache_pages": level,
    }


def summarize_with_timeline(
    replay: Replay, run: PolicyRun
) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The summary blocks, the timeline and the vCPU cache levels of one run."""
    return summarize(replay, run), timeline(replay, run), vcpu_cache_levels(replay, run)
