"""Host events on the vectorized engine's state: reclaim, shrink, unmap, zap_all.

Reclaim passes and their scans follow rules 9-12 (with 21, 23-25 and 29), unmap rule 14 and
zap_all rule 15.

Each runs between two epochs, one event at a time, as the reference engine runs it: host events
are few next to accesses, so plain loops over VMs and vCPUs cost nothing that matters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replay.mmu import removals
from replay.mmu.config import Cause
from replay.mmu.results import ScanRow
from replay.mmu.shrinker import shrink_slab_pass
from replay.trace.schema import EVENT_CODE, SOURCES

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from replay.mmu.caches import VcpuCaches
    from replay.mmu.config import CostModel, MmuConfig, Policy
    from replay.mmu.machine import MmuState
    from replay.trace.reader import EventBatch
    from replay.trace.schema import TraceMeta

_RECLAIM, _SHRINK, _UNMAP = EVENT_CODE["reclaim"], EVENT_CODE["shrink"], EVENT_CODE["unmap"]
_REGION = EVENT_CODE["region"]


class HostEvents:
    """The host's side of a replay: the shrinker's state and logs, and the events that act."""

    def __init__(
        self,
        meta: TraceMeta,
        policy: Policy,
        cfg: MmuConfig,
        costs: CostModel,
        state: MmuState,
        caches: VcpuCaches,
    ) -> None:
        self.meta = meta
        self.policy = policy
        self.cfg = cfg
        self.costs = costs
        self.state = state
        self.caches = caches
        self.vm_list = [vm.id for vm in meta.vms]
        """Section 2: VM ids, head first."""
        self.nr_deferred = 0
        self.last_reclaim_t: int | None = None
        """Time of the latest reclaim pass: the pressure window's start (rules 18, 24)."""
        self.scans: list[ScanRow] = []
        self.sp_removals: list[tuple[int, int, int, int]] = []
        """(row, t, VM id, SPs) of every zap, the page limit's included (the engine adds them)."""
        self.cache_frees: list[tuple[int, int, int, int, int]] = []
        """(row, t, VM id, vCPU, objects) of every cache a cache scan emptied."""
        self.on_shrinker_zap: Callable[[int, np.ndarray], None] | None = None
        """Told of every shrinker zap (VM index, SP ids): sampled accesses look there (rule 32)."""

    def apply(self, batch: EventBatch, i: int) -> None:
        """Apply host event ``i`` of ``batch``."""
        kind = int(batch.event[i])
        if kind in (_RECLAIM, _SHRINK):
            self.apply_shrinker(batch, i)
            return
        row = batch.start_row + i
        t = int(batch.t_ns[i])
        if kind == _REGION:
            raise AssertionError("region rows are the engine's (rule 32), not a host event")
        if kind == _UNMAP:
            vi = int(self.state.lay.vm_index[int(batch.vm[i])])
            removals.unmap(self.state, vi, int(batch.gpa[i]), int(batch.len[i]))
        else:
            vm_id = int(batch.vm[i])
            live = removals.zap_all(self.state, int(self.state.lay.vm_index[vm_id]))
            if live:
                self.sp_removals.append((row, t, vm_id, live))

    def apply_shrinker(self, batch: EventBatch, i: int) -> None:
        """Apply host event ``i`` of ``batch`` if it is a reclaim pass or a ``shrink``.

        This is all a policy that shares another's walk (``KEEPS_PAGE_TABLES``) does of the
        host events: under it the shrinker never touches a page table, so the other events
        are the walk's to apply, once.
        """
        row = batch.start_row + i
        t = int(batch.t_ns[i])
        kind = int(batch.event[i])
        if kind == _RECLAIM:
            self._reclaim(row, t, SOURCES[batch.source[i]], int(batch.priority[i]))
        elif kind == _SHRINK and self.policy != "none":  # rules 10 and 29
            self._scan(row, t, ("shrink", None, None), int(batch.nr_to_scan[i]))

    def _reclaim(self, row: int, t: int, source: str, priority: int) -> None:
        """Rule 9 (and 24: every reclaim pass starts the pressure window)."""
        self.last_reclaim_t = t
        if source == "memcg" or self.policy == "none":
            return
        if self.policy == "zap":
            # Rule 11: live shadow_direct SPs of every VM; TDP MMU pages are never counted.
            count = int(self.state.sps.live[self.state.lay.shadow_direct].sum())
        else:
            count = int(self.caches.shadow_page.sum())  # rule 12
        slab = shrink_slab_pass(count, self.nr_deferred, priority, self.cfg)
        for n in slab.scans:
            self._scan(row, t, ("reclaim", source, priority), n)
        self.nr_deferred = slab.nr_deferred

    def _scan(self, row: int, t: int, why: tuple[str, str | None, int | None], n: int) -> None:
        """One scan call of ``n`` (rules 11, 12), logged as a scan row (rule 25's flush)."""
        if self.policy == "zap":
            vms, freed_by_vm = self._scan_zap(row, t, n)
        else:
            vms, freed_by_vm = self._scan_cache(row, t, n)
        total = sum(freed_by_vm)
        flush = self.costs.zap_flush_ns if self.policy == "zap" and total else 0
        event, source, priority = why
        self.scans.append(
            ScanRow(
                row, t, event, source, priority, n, total, tuple(vms), tuple(freed_by_vm), flush
            )
        )

    def _scan_zap(self, row: int, t: int, n: int) -> tuple[list[int], list[int]]:
        """Rule 11: one VM per call, looking at no more than n VMs."""
        lay = self.state.lay
        for looked, vm_id in enumerate(list(self.vm_list)):
            if looked == n:
                break
            vi = int(lay.vm_index[vm_id])
            if not lay.shadow_direct[vi] or self.state.sps.live[vi] == 0:
                continue
            ids = self.state.sps.oldest(vi, n)
            if len(ids):
                removals.zap(self.state, vi, ids, Cause.ZAPPED)
                self.sp_removals.append((row, t, vm_id, len(ids)))
                if self.on_shrinker_zap is not None:
                    self.on_shrinker_zap(vi, ids)
            self._rotate(vm_id)
            return [vm_id], [len(ids)]
        return [], []

    def _scan_cache(self, row: int, t: int, n: int) -> tuple[list[int], list[int]]:
        """Rule 12 (with 21 and 23): empty idle vCPUs' shadow_page caches, VM by VM."""
        lay = self.state.lay
        caches = self.caches
        vms: list[int] = []
        freed_by_vm: list[int] = []
        freed = 0
        for vm_id in list(self.vm_list):
            self._rotate(vm_id)  # moved to the tail before its vCPUs are looked at
            vi = int(lay.vm_index[vm_id])
            base = int(lay.vcpu_base[vi])
            visited = False
            vm_freed = 0
            for vcpu in range(self.meta.vms[vi].vcpus):
                g_vcpu = base + vcpu
                if t < caches.busy_until[g_vcpu]:  # rules 16 and 23: busy, half-open window
                    continue
                got = int(caches.shadow_page[g_vcpu])
                caches.shadow_page[g_vcpu] = 0
                if got > 0:
                    caches.emptied[g_vcpu] = True  # rule 21
                    self.cache_frees.append((row, t, vm_id, vcpu, got))
                visited = True
                vm_freed += got
                freed += got
                if freed >= n:
                    break
            if visited:
                vms.append(vm_id)
                freed_by_vm.append(vm_freed)
            if freed >= n:
                break
        return vms, freed_by_vm

    def _rotate(self, vm_id: int) -> None:
        self.vm_list.remove(vm_id)
        self.vm_list.append(vm_id)
