"""The vectorized engine: MODEL.md over numpy arrays, an epoch at a time.

Between two state-removing events the MMU state only grows (leaves are installed, SPs allocated
or relinked), so a run of accesses -- an *epoch* -- is one batch of array operations:

* an access whose leaf is present and whose leaf's SP is reachable (it and every SP above it
  exist and are linked) at the epoch's start hits; nothing else needs looking at for it
  (``replay.mmu.hits``);
* among the rest, the faults are the first access to each missing leaf (to each prefetch group,
  rule 3e) and the first access under each SP that is missing or unlinked (rules 3d, 20)
  (``replay.mmu.candidates``);
* each fault's new and relinked SPs are the SPs on its path whose first access it is;
* per-vCPU cache levels follow from a cumulative sum of consumption, the refill points found by
  ``searchsorted`` (rule 3a, ``replay.mmu.caches``).

Only host events (reclaim passes and their scans, ``shrink``, ``unmap``, ``zap_all``:
``replay.mmu.host``), the shadow_direct page limit (rule 13) and prefetch groups that straddle a
slot edge split an epoch; they act on the arrays between epochs (``replay.mmu.removals``). The
scalar engine (``replay.mmu.reference``) is the oracle: tests hold this engine to its fault and
scan rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from replay._arrays import stable_order, starts_of_runs
from replay.mmu import removals
from replay.mmu.accounts import Account, CompanionRun
from replay.mmu.caches import VcpuCaches
from replay.mmu.candidates import Candidates, CandidateSelector, Faults
from replay.mmu.config import (
    KEEPS_PAGE_TABLES,
    Attribution,
    Cause,
    CostModel,
    MmuConfig,
    Policy,
    Refill,
)
from replay.mmu.host import HostEvents
from replay.mmu.lanes import Lanes
from replay.mmu.layout import Layout
from replay.mmu.machine import MmuState
from replay.mmu.results import FaultConsumer, FaultRows
from replay.mmu.sampled import SampledRegions, chosen
from replay.mmu.tables import LookupTables
from replay.trace.schema import EVENT_CODE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from replay.mmu.results import EngineResult
    from replay.trace.reader import EventBatch
    from replay.trace.schema import TraceMeta

# Plain ints for the hot paths (an Enum member lookup costs more than the numpy call).
_ZAPPED, _SHRINKER = int(Cause.ZAPPED), int(Refill.SHRINKER)
_ATTR_NONE, _ATTR_CACHE = int(Attribution.NONE), int(Attribution.CACHE_EVICTION)
_ATTR_ZAPPED = int(Attribution.ZAPPED_PAGE_TABLES)
_REGION = EVENT_CODE["region"]


@dataclass(frozen=True)
class _Accesses:
    """A run of accesses (an epoch, or a step of one) in trace order.

    Their trace rows are ``row0`` on, or ``rows`` when given: a lane of a parallel epoch
    replays some VMs' accesses, whose rows are not consecutive, and the sampled accesses of a
    region row all carry that row (MODEL.md rule 35).
    """

    row0: int
    t: np.ndarray
    vm: np.ndarray
    vcpu: np.ndarray
    gpa: np.ndarray
    rows: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.t)

    def rows_at(self, at: np.ndarray) -> np.ndarray:
        """The trace rows of the accesses at positions ``at``."""
        rows: np.ndarray = self.row0 + at if self.rows is None else self.rows[at]
        return rows

    def head(self, n: int) -> _Accesses:
        """The first ``n`` accesses."""
        rows = None if self.rows is None else self.rows[:n]
        return _Accesses(self.row0, self.t[:n], self.vm[:n], self.vcpu[:n], self.gpa[:n], rows)

    def tail(self, n: int) -> _Accesses:
        """The accesses after the first ``n``."""
        rows = None if self.rows is None else self.rows[n:]
        return _Accesses(self.row0 + n, self.t[n:], self.vm[n:], self.vcpu[n:], self.gpa[n:], rows)

    def of_lane(self, lanes: np.ndarray, lane: int) -> _Accesses:
        """The accesses of lane ``lane``; ``lanes`` holds every access's lane."""
        at = np.flatnonzero(lanes == lane)
        return _Accesses(
            self.row0, self.t[at], self.vm[at], self.vcpu[at], self.gpa[at], self.rows_at(at)
        )


class VectorEngine:
    """Replays a trace with numpy; same interface and results as the reference engine.

    ``companions`` are policies replayed by the same walk (each with its fault consumer):
    policies of :data:`~replay.mmu.config.KEEPS_PAGE_TABLES`, like ``policy`` itself. Their
    page tables go through the same states, so one walk finds the faults of all of them, and
    only the caches, the shrinker and the rows are each one's own (ENGINE.md, "Shared walks").
    :meth:`companion` hands out each one's run to finish like an engine.
    """

    def __init__(
        self,
        meta: TraceMeta,
        policy: Policy,
        cfg: MmuConfig,
        costs: CostModel,
        sink: FaultConsumer | None = None,
        threads: int = 1,
        companions: Sequence[tuple[Policy, FaultConsumer | None]] = (),
    ) -> None:
        self.meta = meta
        self.policy = policy
        self.cfg = cfg
        self.costs = costs
        n_max = [cfg.n_max_mmu_pages(vm.guest_pages) for vm in meta.vms]
        self.lay = Layout.build(meta, n_max)
        self.tables = LookupTables.build(self.lay, cfg)
        self.state = MmuState.build(self.tables)
        own = self._account(policy, sink)
        self.accounts = [own]
        """The policies this walk replays, this engine's first (see :class:`Account`)."""
        for other, other_sink in companions:
            if not {policy, other} <= KEEPS_PAGE_TABLES:
                raise ValueError(f"policies {policy} and {other} cannot share a walk")
            self.accounts.append(self._account(other, other_sink, own.host.sp_removals))
        self.selector = CandidateSelector(self.tables, self.state)
        self.sampled = SampledRegions(self.state)
        self.host.on_shrinker_zap = self.sampled.zapped
        self.sp_removals = self.host.sp_removals
        self.cache_frees = self.host.cache_frees
        self._carried_recycled = 0
        """SPs the page-limit zap at the end of the last step freed, for the next step's first
        fault (the fault that triggered it, rule 25)."""
        self.lanes: Lanes | None = None
        """With ``threads`` over 1, the lanes that replay an epoch's VMs side by side."""
        if threads > 1 and self.lay.n_vms > 1:
            self.lanes = Lanes(self, threads)

    @property
    def caches(self) -> VcpuCaches:
        """The engine's own policy's vCPU caches."""
        return self.accounts[0].caches

    @property
    def host(self) -> HostEvents:
        """The engine's own policy's host events (its shrinker)."""
        return self.accounts[0].host

    @property
    def faults(self) -> FaultConsumer:
        """Where the engine's own policy's fault rows go."""
        return self.accounts[0].faults

    @faults.setter
    def faults(self, sink: FaultConsumer) -> None:
        self.accounts[0] = dataclasses.replace(self.accounts[0], faults=sink)

    def _account(
        self,
        policy: Policy,
        sink: FaultConsumer | None,
        sp_removals: list[tuple[int, int, int, int]] | None = None,
    ) -> Account:
        """A policy's account.

        A companion logs its SP removals in the walk's list: they are the same removals (its
        shrinker removes none).
        """
        caches = VcpuCaches(self.meta, self.lay, self.cfg)
        host = HostEvents(self.meta, policy, self.cfg, self.costs, self.state, caches)
        if sp_removals is not None:
            host.sp_removals = sp_removals
        return Account(policy, caches, host, sink if sink is not None else FaultRows())

    def companion(self, k: int) -> CompanionRun:
        """The run of the ``k``-th companion (from 1, in the order given).

        Finish it like an engine once this one has been fed the trace.
        """
        if not 1 <= k < len(self.accounts):
            raise IndexError(f"no companion {k}")
        return CompanionRun(self, self.accounts[k])

    # -- driving --------------------------------------------------------------------------------

    def feed(self, batch: EventBatch) -> None:
        """Apply a batch: epochs of accesses, and the host events between them (rule 17)."""
        start = 0
        for host_at in [*batch.host.tolist(), len(batch)]:
            if host_at > start:
                run = slice(start, host_at)
                epoch = _Accesses(
                    batch.start_row + start,
                    batch.t_ns[run],
                    batch.vm[run],
                    batch.vcpu[run],
                    batch.gpa[run],
                )
                self._epoch(epoch)
            if host_at < len(batch) and batch.event[host_at] == _REGION:
                self._region(batch, host_at)
            elif host_at < len(batch):
                self.host.apply(batch, host_at)
                for account in self.accounts[1:]:
                    account.host.apply_shrinker(batch, host_at)
            start = host_at + 1

    def _region(self, batch: EventBatch, i: int) -> None:
        """Rules 32 to 35: a region row's sampled accesses, replayed as one epoch of its row."""
        if not batch.nr_accesses[i]:
            return  # rule 33: a region no check found accessed samples nothing
        vm_id = int(batch.vm[i])
        vi = int(self.lay.vm_index[vm_id])
        gfn = int(batch.gpa[i]) >> 12
        first, pages = self.sampled.leaves(vi, gfn, gfn + (int(batch.len[i]) >> 12))
        if not len(first):
            return
        row = batch.start_row + i
        checks = (int(batch.nr_accesses[i]), int(batch.window_ns[i]) // int(batch.sample_ns[i]))
        hit, vcpu = chosen(row, first, pages, checks, self.meta.vms[vi].vcpus)
        n = int(hit.sum())
        if not n:
            return
        self._epoch(
            _Accesses(
                row,
                np.full(n, int(batch.t_ns[i]), dtype=np.int64),
                np.full(n, vm_id, dtype=np.uint16),
                vcpu[hit].astype(np.uint16),
                first[hit].astype(np.uint64) << np.uint64(12),
                rows=np.full(n, row, dtype=np.int64),
            )
        )

    def finish(self) -> EngineResult:
        """The replay's results."""
        self.close()
        return self.accounts[0].result()

    def close(self) -> None:
        """Stop the lanes' threads, if any (a replay that stops early calls it too)."""
        if self.lanes is not None:
            self.lanes.close()

    _EPOCH_MAX = 1 << 18
    """Accesses per step of an epoch. The state only grows within an epoch, so any prefix is an
    epoch of its own and the rows do not change; bounded steps bound the size of the step's
    temporaries, so the kernel zeroes fewer fresh pages and the peak memory stays flat."""

    _PACK_FROM = 16
    """An epoch of n accesses tests hits on a bit-packed copy of ``present`` when n times this
    reaches the number of leaves (packing costs a pass over them)."""

    def _epoch(self, epoch: _Accesses) -> None:
        """One epoch, in steps of at most ``_EPOCH_MAX`` accesses.

        A step also ends where the page limit or a slot-edge prefetch group needs it.
        """
        leaves = self.state.leaves
        if self.tables.fast is not None and len(epoch) * self._PACK_FROM >= len(leaves.present):
            leaves.pack()
        try:
            if self.lanes is not None and self.lanes.splits(epoch):
                self.lanes.run(epoch)
            else:
                self._steps(epoch)
        finally:
            leaves.unpack()  # host events change ``present`` between epochs

    def _steps(self, epoch: _Accesses) -> None:
        """The steps of an epoch (or of a lane's share of one, ENGINE.md "Lanes")."""
        carried: int | None = None
        while len(epoch):
            done, carried = self._step(epoch.head(self._EPOCH_MAX), carried)
            epoch = epoch.tail(done)

    def _step(self, step: _Accesses, carried: int | None) -> tuple[int, int | None]:
        """Replay a prefix of ``step``; return how many accesses it consumed, and a cause.

        ``carried`` is the cause of the step's first access, read (rule 5) before the page-limit
        zap that ended the previous step; the cause returned is the same for the next step.
        """
        hit = self.state.hits(step.vm, step.gpa, self.state.leaves)
        if carried is None and hit.all():
            return len(step), None  # every access hits: nothing changes
        cands = self.selector.select(step.vm, step.gpa, hit, carried)
        stop, consumed, limit_at = self._stop(cands, carried, len(step))
        faulting = np.flatnonzero(cands.fault[:stop])
        recycled = 0
        if carried is not None and len(faulting) and faulting[0] == 0:
            recycled = self._carried_recycled
        self._commit(step, cands, faulting, carried, recycled)
        if limit_at is None:
            return consumed, None
        # Rule 13: the cause of the fault that needs room is read before its zap (rule 5).
        stopped = cands.faults(np.array([limit_at]))
        next_carried = int(cands.causes(stopped, self.state)[0])
        at = int(cands.at[limit_at])
        vi = int(cands.vi[limit_at])
        self._carried_recycled = self._zap_page_limit(
            vi, int(step.rows_at(np.array([at]))[0]), int(step.t[at])
        )
        return consumed, next_carried

    def _stop(self, cands: Candidates, carried: int | None, n: int) -> tuple[int, int, int | None]:
        """Where the step stops: candidates committed, accesses consumed, page-limit candidate.

        A leaf fault in a slot-edge group ends the step after it (its prefetch is worked out
        alone, then the next step resumes after it); a fault that the page limit stops ends it
        before that fault, which the next step replays after the zap.
        """
        stop = len(cands.at)
        after_stop = False
        edge = np.flatnonzero(cands.missing & cands.edge_group)
        if len(edge):
            stop = int(edge[0]) + 1
            after_stop = True
        limit_at = self._page_limit_trigger(cands, stop, carried)
        if limit_at is not None:
            stop = limit_at
            after_stop = False
        consumed = int(cands.at[stop]) if stop < len(cands.at) else n
        if after_stop:
            consumed = int(cands.at[stop - 1]) + 1
        return stop, consumed, limit_at

    def _page_limit_trigger(self, cands: Candidates, stop: int, carried: int | None) -> int | None:
        """Rule 13: the first fault (before ``stop``) whose VM is short of free SPs."""
        lay = self.lay
        vi = cands.vi[:stop]
        # The faults of shadow_direct VMs: only they have a page limit.
        limited = np.flatnonzero(cands.fault[:stop] & cands.inside[:stop] & lay.shadow_direct[vi])
        if not len(limited):
            return None
        new_sps = cands.new_sps[limited]
        live = self.state.sps.live
        # Quick exit: no VM can come within min_free of its limit in this step.
        most = live + np.bincount(vi[limited], weights=new_sps, minlength=lay.n_vms)
        if (most <= lay.n_max - self.cfg.min_free_mmu_pages).all():
            return None
        # Live SPs before each fault: its VM's allocations by the faults before it.
        vms = vi[limited]
        order = stable_order(vms)
        by_vm, adds = vms[order], new_sps[order]
        csum = np.cumsum(adds)
        vm_start = starts_of_runs(by_vm)
        base = np.maximum.accumulate(np.where(vm_start, csum - adds, 0))
        before = live[by_vm] + (csum - adds - base)
        short = lay.n_max[by_vm] - before < self.cfg.min_free_mmu_pages
        if carried is not None and limited[0] == 0:
            short[np.flatnonzero(order == 0)] = False  # the carried fault had its zap
        if not short.any():
            return None
        return int(limited[order[short]].min())

    def _zap_page_limit(self, vi: int, row: int, t: int) -> int:
        """Rules 13 and 26: zap the oldest SPs until refill_pages - avail are counted."""
        avail = max(0, int(self.lay.n_max[vi]) - int(self.state.sps.live[vi]))
        ids = self.state.sps.oldest(vi, self.cfg.refill_pages - avail)
        if len(ids):
            removals.zap(self.state, vi, ids, Cause.RECYCLED)
            # Leaves went: the packed copy of the epoch (if any) is re-packed for this VM only.
            self.state.leaves.repack(int(self.lay.vm_key_lo[vi]), int(self.lay.vm_key_hi[vi]))
            self.sp_removals.append((row, t, int(self.lay.vm_ids[vi]), len(ids)))
        return len(ids)

    # -- committing a step's faults -------------------------------------------------------------

    def _commit(
        self,
        step: _Accesses,
        cands: Candidates,
        faulting: np.ndarray,
        carried: int | None,
        recycled: int,
    ) -> None:
        """Apply the faults ``faulting`` (candidate indexes) of a step and write their rows.

        ``recycled`` is the SPs a page-limit zap freed for the first of them (rule 25).
        """
        if not len(faulting):
            return
        faults = cands.faults(faulting)
        cause = cands.causes(faults, self.state)  # before anything changes
        if carried is not None and faulting[0] == 0:
            cause[0] = carried
        new_ids, relinked_ids = self._commit_sps(cands, faults.columns)
        self._commit_leaves(cands, faults)
        if len(new_ids) or len(relinked_ids):
            self.state.hits.after_faults(new_ids, relinked_ids)
        relinked = np.zeros(len(faulting), dtype=np.int64)
        relinked[faults.with_path] = cands.paths.relinked[faults.columns]
        self._write_faults(step, cands, faults, cause, (relinked, recycled))

    def _commit_sps(self, cands: Candidates, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rule 3d: allocate and relink the SPs of the faults' paths ``columns``.

        Creation order is trace order, then top-down. Paths past where the step stops are not
        among ``columns``.
        """
        paths = cands.paths
        chosen = np.zeros(len(paths.candidate), dtype=bool)
        chosen[columns] = True
        alloc_col, alloc_level = np.nonzero((paths.allocates & chosen).T)  # by fault, top-down
        new_ids = paths.sp_ids[alloc_level, alloc_col]
        self.state.sps.allocate(new_ids)
        relinked_ids = paths.sp_ids[paths.relinks & chosen]
        self.state.sps.relink(relinked_ids)
        return new_ids, relinked_ids

    def _commit_leaves(self, cands: Candidates, faults: Faults) -> None:
        """Rule 3e: each leaf fault installs its leaf and prefetches its group."""
        leaves = self.state.leaves
        which = faults.which
        # Gathers at positions, not boolean masks: masks this irregular cost more.
        leaf_fault = cands.missing[which]
        leaves.install(faults.key[np.flatnonzero(leaf_fault)])
        whole = np.flatnonzero(leaf_fault & cands.whole_group[which])
        if len(whole):
            # A whole-slot group is filled from its first key: its keys are aligned like its
            # gfns (4 KiB keys are congruent to their gfns modulo 512, see the layout).
            grp = self.cfg.pte_prefetch
            leaves.install_groups(faults.key[whole] & ~(grp - 1), grp)
        # At most one slot-edge group: the step stops after it.
        for j in which[np.flatnonzero(leaf_fault & cands.edge_group[which])].tolist():
            leaves.install(self._prefetch_at_slot_edge(int(cands.vi[j]), int(cands.gfn[j])))

    def _prefetch_at_slot_edge(self, vi: int, gfn: int) -> np.ndarray:
        """Rule 3e, entry by entry, for a group that straddles a slot edge.

        Returns the keys the fault installs, the faulting gfn's first.
        """
        lay = self.lay
        grp = self.cfg.pte_prefetch
        group = gfn & ~(grp - 1)
        gfns = np.arange(group, group + grp, dtype=np.uint64)
        vms = np.full(grp, lay.vm_ids[vi], dtype=np.uint16)
        _, seg, inside, key = self.tables.locate(vms, gfns << np.uint64(12))
        has_leaf = inside & self.state.leaves.present[key]
        out: list[int] = [int(key[gfn - group])]

        def run(a: int, b: int) -> bool:
            if not inside[a] or lay.seg_dirty[seg[a]]:
                return False
            seg_hi = int(lay.seg_gfn_hi[seg[a]])
            if group + b > seg_hi or (b > a + 1 and not (seg[a:b] == seg[a]).all()):
                return False  # the run ends past its slot (a slot edge falls inside it)
            out.extend(int(k) for k in key[a:b])
            return True

        start: int | None = None
        for i in range(grp):
            if has_leaf[i] or group + i == gfn:
                if start is None:
                    continue
                if not run(start, i):
                    return np.array(out, dtype=np.int64)
                start = None
            elif start is None:
                start = i
        if start is not None:
            run(start, grp)
        return np.array(out, dtype=np.int64)

    def _write_faults(
        self,
        step: _Accesses,
        cands: Candidates,
        faults: Faults,
        cause: np.ndarray,
        sp_work: tuple[np.ndarray, int],
    ) -> None:
        """Write the faults' rows, with their caches, costs, busy windows and attribution.

        Rules 3a, 18, 16 and 7, in that order. ``sp_work`` is each fault's relinked SPs and
        the first fault's recycled ones.
        """
        which, inside = faults.which, faults.inside
        at = cands.at[which]
        new_sps = cands.new_sps[which] * inside
        vcpu = step.vcpu[at]
        g_vcpu = self.lay.vcpu_base[cands.vi[which]] + vcpu.astype(np.int64)
        real = np.flatnonzero(inside)  # MMIO touches no cache and sets no busy window
        t = step.t[at]
        relinked, recycled = sp_work
        recycled_sps = np.zeros(len(which), dtype=np.int64)
        if recycled and which[0] == 0:
            recycled_sps[0] = recycled
        walk = {
            "row": step.rows_at(at),
            "t_ns": t,
            "vm": step.vm[at],
            "vcpu": vcpu,
            "gfn": cands.gfn[which],
            "cause": cause,
            "leaf_level": self.lay.seg_level[cands.seg[which]] * inside,
            "new_sps": new_sps,
            "relinked_sps": relinked,
            "recycled_sps": recycled_sps,
        }
        for account in self.accounts:  # the walk's columns are every account's
            refill = np.zeros(len(which), dtype=np.int8)
            pages = np.zeros(len(which), dtype=np.int64)
            if len(real):
                refill[real], pages[real] = account.caches.topups(g_vcpu[real], new_sps[real])
            est = self._estimates(account.host, t, inside, new_sps, pages, recycled_sps)
            if len(real):
                np.maximum.at(account.caches.busy_until, g_vcpu[real], t[real] + est[real])
            account.faults.add(
                {
                    **walk,
                    "refill": refill,
                    "attribution": _attribution(cause, refill),
                    "pages_refilled": pages,
                    "est_ns": est,
                }
            )

    def _estimates(
        self,
        host: HostEvents,
        t: np.ndarray,
        inside: np.ndarray,
        new_sps: np.ndarray,
        pages: np.ndarray,
        recycled_sps: np.ndarray,
    ) -> np.ndarray:
        """Rule 18: each fault's estimated cost.

        Rule 22: MMIO costs the base alone; rule 25: a page-limit zap's flush goes to the fault
        that triggered it. ``host`` holds the policy's pressure window (rule 24).
        """
        costs = self.costs
        rate: int | np.ndarray = costs.refill_page_ns
        last_reclaim_t = host.last_reclaim_t
        if last_reclaim_t is not None:
            rate = np.where(
                t - last_reclaim_t <= costs.pressure_window_ns,
                costs.refill_page_pressure_ns,
                costs.refill_page_ns,
            )
        est = (
            costs.fault_base_ns
            + costs.sp_alloc_ns * new_sps
            + rate * pages
            + np.where(recycled_sps > 0, costs.zap_flush_ns, 0)
        )
        out: np.ndarray = np.where(inside, est, costs.fault_base_ns).astype(np.int64)
        return out


def _attribution(cause: np.ndarray, refill: np.ndarray) -> np.ndarray:
    """Rule 7: zapped page tables first, then a refill the shrinker caused.

    In arithmetic on the masks' bytes: ``np.where`` costs more on masks this irregular.
    """
    zapped = cause == _ZAPPED
    by_cache = (refill == _SHRINKER) & ~zapped
    out: np.ndarray = (
        _ATTR_NONE
        + (_ATTR_ZAPPED - _ATTR_NONE) * zapped.view(np.int8)
        + (_ATTR_CACHE - _ATTR_NONE) * by_cache.view(np.int8)
    )
    return out
