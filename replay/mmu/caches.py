"""The vCPUs' MMU memory caches and busy windows, and rule 3a's topups for a run of faults.

The per-vCPU state of MODEL.md section 2 as arrays by global vCPU index; the topups of a whole
epoch's faults are found at once, from running sums of what the faults consume.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from replay._arrays import stable_order, starts_of_runs
from replay.mmu.config import Refill

if TYPE_CHECKING:
    from replay.mmu.config import MmuConfig
    from replay.mmu.layout import Layout
    from replay.trace.schema import TraceMeta

# Plain ints for the hot paths (an Enum member lookup costs more than the numpy call).
_NO_REFILL, _NATURAL, _SHRINKER = int(Refill.NONE), int(Refill.NATURAL), int(Refill.SHRINKER)


@dataclass(frozen=True)
class _Consumption:
    """A run of faults' cache consumption, the faults sorted by vCPU (stably)."""

    vcpu: np.ndarray
    """Each fault's global vCPU index, ascending."""
    starts: np.ndarray
    """Where each vCPU's faults begin ..."""
    ends: np.ndarray
    """... and end."""
    total: np.ndarray
    """Consumption up to and including each fault, over all faults (never decreases)."""
    before: np.ndarray
    """The same, excluding the fault itself."""
    vcpu_before: np.ndarray
    """Consumption of the vCPU's earlier faults of the run."""
    vcpu_total: np.ndarray
    """Per vCPU, its faults' whole consumption."""

    @classmethod
    def of(cls, vcpu: np.ndarray, consume: np.ndarray) -> _Consumption:
        """Running sums of ``consume`` (objects each fault takes), ``vcpu`` sorted."""
        starts = np.flatnonzero(starts_of_runs(vcpu))
        ends = np.append(starts[1:], len(vcpu))
        total = np.cumsum(consume)
        before = total - consume
        vcpu_base = np.repeat(before[starts], ends - starts)
        return cls(
            vcpu,
            starts,
            ends,
            total,
            before,
            before - vcpu_base,
            total[ends - 1] - vcpu_base[ends - 1],
        )

    def none(self) -> _Consumption:
        """The same faults consuming nothing (the pte_list_desc cache in v1, rule 3a)."""
        zeros = np.zeros(len(self.vcpu), np.int64)
        vcpu_zeros = np.zeros(len(self.starts), np.int64)
        return _Consumption(self.vcpu, self.starts, self.ends, zeros, zeros, zeros, vcpu_zeros)


@dataclass(frozen=True)
class _Refills:
    """Rule 3a's outcome per fault (in vCPU order): refilled, by the shrinker, pages."""

    refilled: np.ndarray
    by_shrinker: np.ndarray
    pages: np.ndarray


class VcpuCaches:
    """Every vCPU's caches' object counts, emptied-by-shrinker flags and busy window."""

    def __init__(self, meta: TraceMeta, lay: Layout, cfg: MmuConfig) -> None:
        self.cfg = cfg
        self.shadow_page = np.zeros(lay.n_vcpus, dtype=np.int64)
        self.page_header = np.zeros(lay.n_vcpus, dtype=np.int64)
        self.pte_list_desc = np.zeros(lay.n_vcpus, dtype=np.int64)
        """shadow_direct only (rule 3a); a tdp_mmu vCPU's stays 0 and is never refilled."""
        self.emptied = np.zeros(lay.n_vcpus, dtype=bool)
        """``emptied_by_shrinker`` of the shadow_page cache (rules 12, 21)."""
        self.busy_until = np.full(lay.n_vcpus, -(1 << 62), dtype=np.int64)
        """Rule 16: end of the latest fault's busy window."""
        self.shadow_direct = np.repeat(lay.shadow_direct, [vm.vcpus for vm in meta.vms])

    def topups(self, g_vcpu: np.ndarray, consume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rule 3a for a run of faults, in order: each vCPU's caches, refilled below minimum.

        ``consume`` is the SPs each fault allocates (one shadow_page and one page_header
        object each). Returns each fault's refill code and shadow_page pages refilled, and
        leaves every cache at its level after the last fault.
        """
        cfg = self.cfg
        n = len(g_vcpu)
        order = stable_order(g_vcpu)
        vcpu = g_vcpu[order]
        used = _Consumption.of(vcpu, consume[order].astype(np.int64))
        out = _Refills(
            np.zeros(n, dtype=bool), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        )
        self._refill(self.shadow_page, cfg.min_shadow_page, used, out, is_shadow_page=True)
        self._refill(self.page_header, cfg.min_page_header, used, out)
        shadow = self.shadow_direct[vcpu]
        if shadow.any():
            # The pte_list_desc cache consumes nothing in v1: it fills once, on a
            # shadow_direct vCPU's first fault; a tdp_mmu vCPU has none.
            self._refill(self.pte_list_desc, cfg.min_pte_list_desc, used.none(), out, only=shadow)
        refill = np.where(
            out.by_shrinker, _SHRINKER, np.where(out.refilled, _NATURAL, _NO_REFILL)
        ).astype(np.int8)
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n)
        return refill[inverse], out.pages[inverse]

    def _refill(
        self,
        level: np.ndarray,
        minimum: int,
        used: _Consumption,
        out: _Refills,
        *,
        is_shadow_page: bool = False,
        only: np.ndarray | None = None,
    ) -> None:
        """Rule 3a for one cache: mark the faults that refill it, and leave its final level.

        The shadow_page cache's refills count pages and may be the shrinker's doing; ``only``
        restricts the refills to the faults whose vCPU has the cache.
        """
        vcpus = used.vcpu[used.starts]
        needs = (level[used.vcpu] - used.vcpu_before) < minimum
        if only is not None:
            needs &= only
        if not needs.any():
            level[vcpus] -= used.vcpu_total
            return
        need_vcpu = np.logical_or.reduceat(needs, used.starts)
        level[vcpus[~need_vcpu]] -= used.vcpu_total[~need_vcpu]
        self._follow_refills(level, minimum, used, out, np.flatnonzero(need_vcpu), is_shadow_page)

    def _follow_refills(
        self,
        level: np.ndarray,
        minimum: int,
        used: _Consumption,
        out: _Refills,
        refilling: np.ndarray,
        is_shadow_page: bool,
    ) -> None:
        """Find the refills of the vCPUs ``refilling`` (their indexes in ``used.starts``).

        After a refill the level is back at capacity, so the next refill is the first fault
        that finds fewer than the minimum: searched, for the refills only, on the running
        total over all faults (it never decreases), clamped to the vCPU's faults. Every vCPU
        that refills is followed at once, one refill per round: the rounds are as many as the
        most refills one vCPU makes, not as many as all refills.
        """
        cap = self.cfg.cache_capacity
        before = used.before
        first, end = used.starts[refilling], used.ends[refilling]
        vcpu = used.vcpu[first]
        level_now = level[vcpu].astype(np.int64)  # at the last refill (or the start)
        base = before[first]  # running consumption at that moment
        # The first refill: the first fault that finds level_now - (before - base) < minimum.
        pos = np.clip(np.searchsorted(before, base + level_now - minimum, side="right"), first, end)
        first_refill = np.ones(len(refilling), dtype=bool)
        active = np.flatnonzero(pos < end)
        while len(active):
            at = pos[active]
            prior = before[at]
            # Refill at this fault: top up to capacity from what is left (rule 3a).
            out.refilled[at] = True
            if is_shadow_page:
                out.pages[at] = cap - (level_now[active] - (prior - base[active]))
                firsts = first_refill[active]
                # Rule 6: the first refill after a shrinker emptied the cache is its doing.
                flagged = firsts & self.emptied[vcpu[active]]
                out.by_shrinker[at[flagged]] = True
                self.emptied[vcpu[active][firsts]] = False
            first_refill[active] = False
            level_now[active] = cap
            base[active] = prior
            after_refill = np.searchsorted(before, prior + (cap - minimum), side="right")
            pos[active] = np.minimum(after_refill, end[active])
            active = active[pos[active] < end[active]]
        level[vcpu] = level_now - (used.total[end - 1] - base)
