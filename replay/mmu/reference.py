"""The scalar reference engine: MODEL.md, one event at a time, in plain Python.

This is the oracle. It is written to be read side by side with MODEL.md, rule by rule, and it
favours plainness over speed. The vectorized engine (``replay.mmu.engine``) must produce the same
fault and scan rows for every trace.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from replay.mmu.config import Attribution, Cause, CostModel, MmuConfig, Policy, Refill
from replay.mmu.results import FAULT_COLUMNS, EngineResult, FaultConsumer, FaultRows, ScanRow
from replay.mmu.sampled import chosen, zapped_leaves
from replay.mmu.shrinker import shrink_slab_pass
from replay.trace.schema import BACKING_LEVEL, EVENT_KINDS, OPS, SOURCES, TraceMeta, VmSpec

if TYPE_CHECKING:
    from replay.trace.reader import EventBatch

LeafKey = tuple[int, int]
"""A leaf slot: (level, gfn >> 9 * (level - 1)). A gfn's goal level never changes in v1 (slots
and their flags are fixed), so every gfn has exactly one leaf key."""
SpKey = tuple[int, int]
"""An SP: (level, region), region = gfn >> 9 * level (section 0)."""


@dataclass
class Cache:
    """One per-vCPU MMU memory cache (section 2)."""

    name: str
    min_objs: int
    nobjs: int = 0
    emptied_by_shrinker: bool = False


@dataclass
class Vcpu:
    """Per-vCPU state (section 2)."""

    caches: list[Cache]
    busy_until: int = -(1 << 62)

    @property
    def shadow_page(self) -> Cache:
        """The cache of whole page-table pages, the only one a cache scan empties."""
        return self.caches[0]


@dataclass
class SP:
    """A page-table page (section 0)."""

    key: SpKey
    seq: int
    """Creation order (rule 11: 'oldest' is oldest creation, relinking does not renew it)."""
    linked: bool = True
    unlink_cause: Cause | None = None
    leaves: set[LeafKey] = field(default_factory=set)
    children: set[SpKey] = field(default_factory=set)
    """Child SPs currently linked to this one."""


@dataclass
class Vm:
    """Per-VM state (section 2)."""

    spec: VmSpec
    vcpus: list[Vcpu]
    n_max_mmu_pages: int
    sps: dict[SpKey, SP] = field(default_factory=dict)
    """Live SPs, in creation order (dict order: a re-created key goes to the end)."""
    present: set[LeafKey] = field(default_factory=set)
    removal_cause: dict[LeafKey, Cause] = field(default_factory=dict)
    """Last-removal cause per leaf key; absent = never removed (rule 20)."""

    def __post_init__(self) -> None:
        self.slots = sorted(self.spec.memslots, key=lambda s: s.gpa_start)
        self.slot_starts = [s.gfn_start for s in self.slots]

    @property
    def root_level(self) -> int:
        """Level of the VM's root."""
        return self.spec.root_level

    @property
    def shadow_direct(self) -> bool:
        """Whether the VM runs the legacy shadow MMU over EPT/NPT."""
        return self.spec.mmu_mode == "shadow_direct"

    def slot_of(self, gfn: int) -> int | None:
        """Index of the memslot holding ``gfn``, or None (MMIO, rule 1)."""
        i = bisect.bisect_right(self.slot_starts, gfn) - 1
        if i >= 0 and gfn < self.slots[i].gfn_start + self.slots[i].npages:
            return i
        return None

    def goal_level(self, slot: int, gfn: int) -> int:
        """Rule 3b: the leaf level a fault on ``gfn`` installs.

        The backing's level, 1 with dirty logging, lowered until the whole aligned block lies
        inside the slot.
        """
        s = self.slots[slot]
        level = 1 if s.dirty_log else BACKING_LEVEL[s.backing]
        while level > 1:
            span = 1 << (9 * (level - 1))
            start = gfn & ~(span - 1)
            if start >= s.gfn_start and start + span <= s.gfn_start + s.npages:
                break
            level -= 1
        return level


class ReferenceEngine:
    """Replays a trace event by event. Feed it batches in order, then call :meth:`finish`."""

    def __init__(
        self,
        meta: TraceMeta,
        policy: Policy,
        cfg: MmuConfig,
        costs: CostModel,
        sink: FaultConsumer | None = None,
    ) -> None:
        self.policy = policy
        self.cfg = cfg
        self.costs = costs
        self.vms: dict[int, Vm] = {}
        for spec in meta.vms:
            vcpus = []
            for _ in range(spec.vcpus):
                caches = [
                    Cache("shadow_page", cfg.min_shadow_page),
                    Cache("page_header", cfg.min_page_header),
                ]
                if spec.mmu_mode == "shadow_direct":
                    caches.append(Cache("pte_list_desc", cfg.min_pte_list_desc))
                vcpus.append(Vcpu(caches))
            self.vms[spec.id] = Vm(spec, vcpus, cfg.n_max_mmu_pages(spec.guest_pages))
        # Section 2: vm_list in the VM table's order, head first.
        self.vm_list: list[int] = [spec.id for spec in meta.vms]
        self.nr_deferred = 0
        self.sp_seq = 0
        self.last_reclaim_t: int | None = None
        self.faults = sink if sink is not None else FaultRows()
        self._rows: dict[str, list[int]] = {k: [] for k in _ROW_FIELDS}
        self.scans: list[ScanRow] = []
        self.sp_removals: list[tuple[int, int, int, int]] = []
        self.cache_frees: list[tuple[int, int, int, int, int]] = []

    # -- driving --------------------------------------------------------------------------------

    def feed(self, batch: EventBatch) -> None:
        """Apply a batch of events in order (rule 17)."""
        for i in range(len(batch)):
            row = batch.start_row + i
            t = int(batch.t_ns[i])
            kind = EVENT_KINDS[batch.event[i]]
            if kind == "access":
                self.access(
                    row,
                    t,
                    int(batch.vm[i]),
                    int(batch.vcpu[i]),
                    int(batch.gpa[i]),
                    OPS[batch.op[i]],
                )
            elif kind == "reclaim":
                self.reclaim(row, t, SOURCES[batch.source[i]], int(batch.priority[i]))
            elif kind == "shrink":
                self.shrink(row, t, int(batch.nr_to_scan[i]))
            elif kind == "unmap":
                self.unmap(row, int(batch.vm[i]), int(batch.gpa[i]), int(batch.len[i]))
            elif kind == "zap_all":
                self.zap_all(row, t, int(batch.vm[i]))
            else:
                checks = (
                    int(batch.nr_accesses[i]),
                    int(batch.window_ns[i]) // int(batch.sample_ns[i]),
                )
                self.region(row, t, int(batch.vm[i]), int(batch.gpa[i]), int(batch.len[i]), checks)
        self._flush_rows()

    def finish(self) -> EngineResult:
        """The replay's results."""
        self._flush_rows()
        self.faults.close()
        return EngineResult(
            sink=self.faults,
            scans=self.scans,
            sp_removals=self.sp_removals,
            cache_frees=self.cache_frees,
            nr_deferred=self.nr_deferred,
        )

    def _flush_rows(self) -> None:

        self.faults.add({k: np.asarray(v) for k, v in self._rows.items()})
        self._rows = {k: [] for k in _ROW_FIELDS}

    def _emit(self, **row: int) -> None:
        """Append a fault row; a field not given is 0 (no refill, no SP work, leaf level 0)."""
        for k in _ROW_FIELDS:
            self._rows[k].append(row.get(k, 0))

    # -- section 3: a guest access --------------------------------------------------------------

    def access(self, row: int, t: int, vm_id: int, vcpu_id: int, gpa: int, op: str) -> None:
        """Rules 1-4 (and 5-8 for the fault row), in the order MODEL.md section 3 gives."""
        del op  # rule 30: the access type does not change leaves in v1
        vm = self.vms[vm_id]
        gfn = gpa >> 12
        slot = vm.slot_of(gfn)
        if slot is None:
            self._mmio(row, t, vm_id, vcpu_id, gfn)  # rule 1
            return
        goal = vm.goal_level(slot, gfn)  # rule 3b
        leaf: LeafKey = (goal, gfn >> (9 * (goal - 1)))
        # The path: the root, then levels root_level - 1 down to the goal level.
        path: list[SpKey] = [(lv, gfn >> (9 * lv)) for lv in range(vm.root_level, goal - 1, -1)]
        if self._hit(vm, leaf, path):
            return  # rule 2
        cause = self._cause(vm, leaf, path)  # rule 5, read before anything changes
        vcpu = vm.vcpus[vcpu_id]
        refill, pages_refilled = self._topup(vcpu)  # rule 3a
        recycled = self._page_limit(row, t, vm) if vm.shadow_direct else 0  # rule 3c
        new_sps, relinked = self._walk(vm, vcpu, path)  # rule 3d
        self._install_fault(vm, leaf, gfn)  # rule 3e
        est = self._cost(t, new_sps, pages_refilled, recycled)  # rule 18
        vcpu.busy_until = max(vcpu.busy_until, t + est)  # rule 16
        self._emit(
            row=row,
            t_ns=t,
            vm=vm_id,
            vcpu=vcpu_id,
            gfn=gfn,
            cause=cause,
            refill=refill,
            attribution=_attribution(cause, refill),  # rule 7
            leaf_level=goal,
            new_sps=new_sps,
            relinked_sps=relinked,
            recycled_sps=recycled,
            pages_refilled=pages_refilled,
            est_ns=est,
        )

    def _mmio(self, row: int, t: int, vm_id: int, vcpu_id: int, gfn: int) -> None:
        """Rules 1 and 22: an MMIO fault costs fault_base_ns, touches no cache, is not busy."""
        self._emit(
            row=row,
            t_ns=t,
            vm=vm_id,
            vcpu=vcpu_id,
            gfn=gfn,
            cause=Cause.MMIO,
            est_ns=self.costs.fault_base_ns,
        )

    @staticmethod
    def _hit(vm: Vm, leaf: LeafKey, path: list[SpKey]) -> bool:
        """Rule 2: the leaf is present and every SP of its path exists and is linked."""
        linked = all(k in vm.sps and vm.sps[k].linked for k in path)
        return leaf in vm.present and linked

    @staticmethod
    def _cause(vm: Vm, leaf: LeafKey, path: list[SpKey]) -> Cause:
        """Rules 5 and 20: why the translation is missing.

        A present leaf that is cut off takes the cause recorded on the lowest unlinked SP of
        its path; a missing leaf, its last-removal cause (cold if never removed).
        """
        if leaf in vm.present:
            cause = next(
                vm.sps[k].unlink_cause
                for k in reversed(path)
                if k in vm.sps and not vm.sps[k].linked
            )
            assert cause is not None
            return cause
        return vm.removal_cause.get(leaf, Cause.COLD)

    def _walk(self, vm: Vm, vcpu: Vcpu, path: list[SpKey]) -> tuple[int, int]:
        """Rule 3d: walk from the root down to the goal level; return SPs new and relinked."""
        new_sps = relinked = 0
        for depth, key in enumerate(path):
            sp = vm.sps.get(key)
            parent = vm.sps[path[depth - 1]] if depth else None
            if sp is not None and sp.linked:
                continue
            if sp is not None:
                # shadow_direct: an unlinked SP with this key is relinked, at no cost.
                sp.linked = True
                sp.unlink_cause = None
                relinked += 1
            else:
                # Allocate: one shadow page and one header from this vCPU's caches (rule 4).
                for cache in vcpu.caches[:2]:
                    cache.nobjs -= 1
                    if cache.nobjs < 0:
                        raise AssertionError(f"vCPU cache {cache.name} ran dry inside a fault")
                sp = SP(key, self.sp_seq)
                self.sp_seq += 1
                vm.sps[key] = sp
                new_sps += 1
            if parent is not None:
                parent.children.add(key)
        return new_sps, relinked

    def _install_fault(self, vm: Vm, leaf: LeafKey, gfn: int) -> None:
        """Rule 3e: install the faulting leaf, and prefetch (shadow_direct, 4 KiB leaves).

        A fault whose leaf was present (it only relinked tables) changes no leaf.
        """
        if leaf in vm.present:
            return
        self._install(vm, leaf)
        if vm.shadow_direct and leaf[0] == 1:
            self._prefetch(vm, gfn)

    def _cost(self, t: int, new_sps: int, pages_refilled: int, recycled: int) -> int:
        """Rule 18: the fault's estimated cost (rule 25: a page-limit zap's flush is its)."""
        rate = self.costs.refill_page_ns
        if (
            self.last_reclaim_t is not None
            and t - self.last_reclaim_t <= self.costs.pressure_window_ns
        ):
            rate = self.costs.refill_page_pressure_ns
        return (
            self.costs.fault_base_ns
            + self.costs.sp_alloc_ns * new_sps
            + rate * pages_refilled
            + (self.costs.zap_flush_ns if recycled else 0)
        )

    def _topup(self, vcpu: Vcpu) -> tuple[Refill, int]:
        """Rule 3a: top up every cache below its minimum to full capacity."""
        refilled = by_shrinker = False
        pages = 0
        for cache in vcpu.caches:
            if cache.nobjs >= cache.min_objs:
                continue
            if cache is vcpu.shadow_page:
                pages = self.cfg.cache_capacity - cache.nobjs
            refilled = True
            if cache.emptied_by_shrinker:
                by_shrinker = True
                cache.emptied_by_shrinker = False
            cache.nobjs = self.cfg.cache_capacity
        if by_shrinker:
            return Refill.SHRINKER, pages
        return (Refill.NATURAL if refilled else Refill.NONE), pages

    def _install(self, vm: Vm, leaf: LeafKey) -> None:
        level, index = leaf
        vm.present.add(leaf)
        vm.sps[(level, index >> 9)].leaves.add(leaf)

    def _prefetch(self, vm: Vm, gfn: int) -> None:
        """Rule 3e: the kernel's ``__direct_pte_prefetch`` over the 8-aligned group."""
        group = gfn & ~(self.cfg.pte_prefetch - 1)
        start: int | None = None
        for g in range(group, group + self.cfg.pte_prefetch):
            if (1, g) in vm.present or g == gfn:
                if start is None:
                    continue
                if not self._prefetch_run(vm, start, g):
                    return
                start = None
            elif start is None:
                start = g
        if start is not None:
            self._prefetch_run(vm, start, group + self.cfg.pte_prefetch)

    def _prefetch_run(self, vm: Vm, first: int, end: int) -> bool:
        slot = vm.slot_of(first)
        if slot is None:
            return False
        s = vm.slots[slot]
        if s.dirty_log or end > s.gfn_start + s.npages:
            return False
        for g in range(first, end):
            self._install(vm, (1, g))
        return True

    # -- zapping (rules 11, 13, 20) --------------------------------------------------------------

    def _zap_sp(self, vm: Vm, sp: SP, cause: Cause) -> None:
        """Zap one SP: drop its leaves, unlink its children, free it."""
        for leaf in sp.leaves:
            vm.present.discard(leaf)
            vm.removal_cause[leaf] = cause
        for child_key in sp.children:
            child = vm.sps[child_key]
            child.linked = False
            child.unlink_cause = cause
        level, region = sp.key
        parent = vm.sps.get((level + 1, region >> 9))
        if parent is not None:
            parent.children.discard(sp.key)
        del vm.sps[sp.key]

    def _zap_oldest(self, vm: Vm, n: int, cause: Cause) -> int:
        """``kvm_mmu_zap_oldest_mmu_pages``: oldest first, skipping the root, until n counted."""
        zapped = 0
        for sp in list(vm.sps.values()):
            if sp.key[0] == vm.root_level:
                continue
            self._zap_sp(vm, sp, cause)
            zapped += 1
            if zapped >= n:
                break
        return zapped

    def _page_limit(self, row: int, t: int, vm: Vm) -> int:
        """Rules 13 and 26: make room before a shadow_direct fault's walk."""
        live = len(vm.sps)
        if vm.n_max_mmu_pages - live >= self.cfg.min_free_mmu_pages:
            return 0
        avail = max(0, vm.n_max_mmu_pages - live)
        zapped = self._zap_oldest(vm, self.cfg.refill_pages - avail, Cause.RECYCLED)
        if zapped:
            self.sp_removals.append((row, t, vm.spec.id, zapped))
        return zapped

    # -- section 5: host pressure ---------------------------------------------------------------

    def reclaim(self, row: int, t: int, source: str, priority: int) -> None:
        """Rule 9 (and 24: every reclaim pass starts the pressure window)."""
        self.last_reclaim_t = t
        if source == "memcg" or self.policy == "none":
            return
        slab = shrink_slab_pass(self._count(), self.nr_deferred, priority, self.cfg)
        for n in slab.scans:
            self._scan(row, t, "reclaim", source, priority, n)
        self.nr_deferred = slab.nr_deferred

    def shrink(self, row: int, t: int, nr_to_scan: int) -> None:
        """Rules 10 and 29: one direct scan call, even when count() is 0."""
        if self.policy != "none":
            self._scan(row, t, "shrink", None, None, nr_to_scan)

    def _count(self) -> int:
        if self.policy == "zap":
            # Rule 11: live shadow_direct SPs of every VM; TDP MMU pages are never counted.
            return sum(len(vm.sps) for vm in self.vms.values() if vm.shadow_direct)
        # Rule 12: objects in every vCPU's shadow_page cache.
        return sum(v.shadow_page.nobjs for vm in self.vms.values() for v in vm.vcpus)

    def _scan(
        self, row: int, t: int, event: str, source: str | None, priority: int | None, n: int
    ) -> None:
        if self.policy == "zap":
            vms, freed_by_vm = self._scan_zap(row, t, n)
        else:
            vms, freed_by_vm = self._scan_cache(row, t, n)
        freed = sum(freed_by_vm)
        flush = self.costs.zap_flush_ns if self.policy == "zap" and freed else 0  # rule 25
        self.scans.append(
            ScanRow(
                row, t, event, source, priority, n, freed, tuple(vms), tuple(freed_by_vm), flush
            )
        )

    def _scan_zap(self, row: int, t: int, n: int) -> tuple[list[int], list[int]]:
        """Rule 11: one VM per call, looking at no more than n VMs."""
        looked = 0
        for vm_id in list(self.vm_list):
            if looked == n:
                break
            looked += 1
            vm = self.vms[vm_id]
            if not vm.shadow_direct or not vm.sps:
                continue
            freed = self._zap_oldest(vm, n, Cause.ZAPPED)
            if freed:
                self.sp_removals.append((row, t, vm_id, freed))
            self._rotate(vm_id)
            return [vm_id], [freed]
        return [], []

    def _scan_cache(self, row: int, t: int, n: int) -> tuple[list[int], list[int]]:
        """Rule 12 (with 21 and 23): empty idle vCPUs' shadow_page caches, VM by VM."""
        vms: list[int] = []
        freed_by_vm: list[int] = []
        freed = 0
        for vm_id in list(self.vm_list):
            self._rotate(vm_id)  # moved to the tail before its vCPUs are looked at
            vm = self.vms[vm_id]
            visited = False
            vm_freed = 0
            for vcpu_id, vcpu in enumerate(vm.vcpus):
                if t < vcpu.busy_until:  # rule 16/23: busy, [t_fault, t_fault + est) half-open
                    continue
                cache = vcpu.shadow_page
                got = cache.nobjs
                cache.nobjs = 0
                if got > 0:
                    cache.emptied_by_shrinker = True  # rule 21
                    self.cache_frees.append((row, t, vm_id, vcpu_id, got))
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

    # -- section 6: other host events -----------------------------------------------------------

    def unmap(self, row: int, vm_id: int, gpa: int, length: int) -> None:
        """Rules 14 and 28: drop the leaves in the range (huge ones whole); SPs stay."""
        del row
        vm = self.vms[vm_id]
        first = gpa >> 12
        end = (gpa + length + 4095) >> 12  # the end is rounded up to a page
        if end <= first:
            return
        for leaf in self._leaves_in(vm, first, end):
            vm.present.discard(leaf)
            level, index = leaf
            vm.sps[(level, index >> 9)].leaves.discard(leaf)
            vm.removal_cause[leaf] = Cause.NOTIFIER

    def _leaves_in(self, vm: Vm, first: int, end: int) -> list[LeafKey]:
        """Present leaves overlapping gfns [first, end), found through the SPs holding them.

        The SPs are looked up region by region when the range spans fewer regions than there
        are live SPs, and otherwise found by going over the live SPs: either way the cost is
        bounded by the state, not by the range (an unmap of [0, 2**64) spans 2**43 regions).
        """
        keys: list[LeafKey] = []
        for level in (1, 2, 3):
            shift = 9 * (level - 1)
            lo, hi = first >> shift, (end - 1) >> shift
            regions = range(lo >> 9, (hi >> 9) + 1)
            if len(regions) <= len(vm.sps):
                holders = [vm.sps.get((level, region)) for region in regions]
            else:
                holders = [sp for (lv, r), sp in vm.sps.items() if lv == level and r in regions]
            for sp in holders:
                if sp is not None:
                    keys.extend(k for k in sp.leaves if lo <= k[1] <= hi)
        return sorted(keys)

    # -- section 11: sampled accesses -----------------------------------------------------------

    def region(
        self, row: int, t: int, vm_id: int, gpa: int, length: int, checks: tuple[int, int]
    ) -> None:
        """Rules 32 to 35: a DAMON region row's sampled accesses, at its time, in gfn order."""
        vm = self.vms[vm_id]
        if not checks[0]:
            return  # rule 33: a region no check found accessed samples nothing
        firsts, pages = zapped_leaves(vm, gpa >> 12, (gpa + length) >> 12, self._zapped)
        if firsts:
            on, vcpus = chosen(row, np.array(firsts), np.array(pages), checks, len(vm.vcpus))
            for first, vcpu in zip(np.array(firsts)[on].tolist(), vcpus[on].tolist(), strict=True):
                self.access(row, t, vm_id, vcpu, first << 12, "read")

    def _zapped(self, vm: Vm, leaf: LeafKey, path: list[SpKey]) -> bool:
        """Rules 2, 5 and 32: not a hit, and missing because the shrinker zapped it."""
        return not self._hit(vm, leaf, path) and self._cause(vm, leaf, path) == Cause.ZAPPED

    def zap_all(self, row: int, t: int, vm_id: int) -> None:
        """Rules 15 and 28: every SP and leaf of the VM goes, the root too."""
        vm = self.vms[vm_id]
        for leaf in vm.present:
            vm.removal_cause[leaf] = Cause.INVALIDATED
        vm.present.clear()
        if vm.sps:
            self.sp_removals.append((row, t, vm_id, len(vm.sps)))
        vm.sps.clear()


_ROW_FIELDS = tuple(FAULT_COLUMNS)


def _attribution(cause: Cause, refill: Refill) -> Attribution:
    """Rule 7: zapped page tables first, then a refill the shrinker caused."""
    if cause == Cause.ZAPPED:
        return Attribution.ZAPPED_PAGE_TABLES
    if refill == Refill.SHRINKER:
        return Attribution.CACHE_EVICTION
    return Attribution.NONE
