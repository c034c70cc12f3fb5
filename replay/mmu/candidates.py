"""The accesses of an epoch that may fault, and what the epoch knows of each.

Within an epoch the MMU state only grows, so an access that misses the hit test (rule 2) faults
only if nothing before it in the epoch installed its leaf and linked its path: the first access
to each missing leaf (to each prefetch group, rule 3e), the first access under each SP that is
missing or unlinked (rules 3d, 20), and every MMIO access (rule 1). The candidates are the
accesses that can be such a first; :class:`Candidates` holds one column per fact about them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from replay.mmu.config import Cause
from replay.mmu.first_seen import FirstSeen

if TYPE_CHECKING:
    from replay.mmu.machine import MmuState
    from replay.mmu.tables import LookupTables

_MMIO = int(Cause.MMIO)


def count_down(mask: np.ndarray) -> np.ndarray:
    """The True entries of each column of a boolean (levels, n) array (at most 5 levels).

    Row by row as bytes: ``sum(axis=0)`` would first cast every bool to int64.
    """
    rows = mask.view(np.uint8)
    out: np.ndarray = rows[0].copy()
    for row in rows[1:]:
        out += row
    return out


class Paths:
    """The page-table paths of the candidates whose leaf's SP is not reachable (rules 3d, 20).

    Elsewhere the whole path is linked: nothing is allocated or relinked, and only the leaf can
    fault. Column ``i`` of ``sp_ids`` lists the SP ids from the root down to the SP holding
    candidate ``candidate[i]``'s leaf (``LookupTables.paths``); rows are levels.
    """

    def __init__(
        self,
        n: int,
        candidate: np.ndarray,
        sp_ids: np.ndarray,
        first: np.ndarray,
        existed: np.ndarray,
    ) -> None:
        self.column_of = np.full(n, -1, dtype=np.int64)
        """Each of the ``n`` candidates' column here, -1 for those without a path."""
        self.column_of[candidate] = np.arange(len(candidate))
        self.candidate = candidate
        """The candidate of each column."""
        self.sp_ids = sp_ids
        self.first_under = first
        """Per level and column: the first access under an SP that was missing or unlinked at
        the epoch's start. Such an access allocates the SP (if it did not exist) or relinks it."""
        self.allocates = first & ~existed
        self.relinks = first & existed
        self.faults = first.any(axis=0)
        """The columns whose access faults on its path (rule 3d)."""
        self.new_sps = count_down(self.allocates)
        self.relinked = count_down(self.relinks)

    def columns_of(self, which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of candidates ``which`` have a path (as positions in it), and their columns."""
        columns = self.column_of[which]
        with_path = np.flatnonzero(columns >= 0)
        return with_path, columns[with_path]

    def lowest_relinked(self, columns: np.ndarray) -> np.ndarray:
        """For each column, the lowest SP its access relinks (one it relinks must exist)."""
        relinks = self.relinks[:, columns]
        lowest = len(self.sp_ids) - 1 - np.argmax(relinks[::-1], axis=0)
        out: np.ndarray = self.sp_ids[lowest, columns]
        return out


@dataclass(frozen=True)
class Candidates:
    """The accesses of an epoch step that may fault; row i of every column is candidate i."""

    at: np.ndarray
    """Position in the step's accesses, ascending."""
    vi: np.ndarray
    """VM index."""
    gfn: np.ndarray
    """Guest frame number (uint64)."""
    seg: np.ndarray
    """Leaf segment (0 outside every slot: see ``inside``)."""
    key: np.ndarray
    """Leaf key (0 outside every slot)."""
    inside: np.ndarray
    """Inside a memslot; False for MMIO (rule 1)."""
    missing: np.ndarray
    """Inside, and the leaf was missing at the epoch's start: a leaf fault."""
    present0: np.ndarray
    """Inside, and the leaf was present at the epoch's start: it faults only if cut off."""
    whole_group: np.ndarray
    """Its leaf fault fills its prefetch group whole (rule 3e)."""
    edge_group: np.ndarray
    """Its leaf fault prefetches a group that straddles a slot edge: entry by entry."""
    paths: Paths
    new_sps: np.ndarray
    """SPs its fault allocates (rule 3d; 0 for a candidate that does not fault)."""
    fault: np.ndarray
    """It faults: MMIO, a leaf fault, or a path fault."""

    def faults(self, which: np.ndarray) -> Faults:
        """The candidates ``which`` (ascending indexes) as faults."""
        with_path, columns = self.paths.columns_of(which)
        return Faults(which, self.key[which], self.inside[which], with_path, columns)

    def causes(self, faults: Faults, state: MmuState) -> np.ndarray:
        """Rules 5 and 20 for ``faults``, read before the epoch changes anything.

        A missing leaf takes its last-removal cause; a present leaf cut off (only a fault with
        a path can have one) takes the cause recorded on the lowest unlinked SP of its path.
        """
        cause = state.leaves.cause[faults.key]
        cut_off = np.flatnonzero(self.present0[faults.which][faults.with_path])
        if len(cut_off):
            lowest = self.paths.lowest_relinked(faults.columns[cut_off])
            cause[faults.with_path[cut_off]] = state.sps.unlink_cause[lowest]
        out: np.ndarray = np.where(faults.inside, cause, _MMIO).astype(np.int8)
        return out


@dataclass(frozen=True)
class Faults:
    """Candidates that fault, with the columns that every step of their commit reads.

    Gathered once: the commit's steps read them in turn.
    """

    which: np.ndarray
    """Candidate indexes, ascending."""
    key: np.ndarray
    inside: np.ndarray
    with_path: np.ndarray
    """Positions (in ``which``) of the faults whose candidate has a path ..."""
    columns: np.ndarray
    """... and its column in the paths."""


class CandidateSelector:
    """Picks an epoch's candidates and works out which fault (rules 1, 2, 3d, 3e, 20)."""

    def __init__(self, tables: LookupTables, state: MmuState) -> None:
        lay = tables.lay
        self.tables = tables
        self.state = state
        self.first_sp = FirstSeen(lay.n_sps + 1)
        self.first_key = FirstSeen(lay.n_keys)
        self.first_group = FirstSeen(lay.n_keys >> tables.groups.shift)
        """Prefetch groups are counted by number (a group's keys are aligned like its gfns),
        in a table ``pte_prefetch`` times smaller than one over keys, whose scattered writes
        then mostly stay in the CPU's caches."""

    def select(
        self, vm: np.ndarray, gpa: np.ndarray, hit: np.ndarray, carried: int | None
    ) -> Candidates:
        """The candidates among a step's accesses (``hit`` from the hit test).

        With a ``carried`` cause (read before a page-limit zap, for the step's first access)
        the first access is a candidate and faults.
        """
        groups = self.tables.groups
        at = np.flatnonzero(~hit)
        if carried is not None and (len(at) == 0 or at[0] != 0):
            at = np.concatenate([[0], at])  # defensive: the access carrying a cause faults
        gfn, seg, inside, key = self.tables.locate(vm[at], gpa[at])
        gfn_signed = gfn.view(np.int64)
        group_inside = (gfn_signed >= groups.lo[seg]) & (gfn_signed < groups.hi[seg])
        whole = inside & groups.filled[seg] & group_inside
        missing = inside & ~self.state.leaves.present[key]  # (an MMIO access's key is 0)
        # Gathers at the kept positions, not boolean masks: masks this irregular cost more.
        kept = np.flatnonzero(self._can_fault(key, inside, whole, missing))
        at = at[kept]
        inside, gfn, key, seg = inside[kept], gfn[kept], key[kept], seg[kept]
        missing = missing[kept]
        vi = self.tables.lay.vm_index[vm[at]]
        paths = self._paths(vi, gfn, seg, inside)
        path_fault = np.zeros(len(at), dtype=bool)
        path_fault[paths.candidate] = paths.faults
        new_sps = np.zeros(len(at), dtype=np.int64)
        new_sps[paths.candidate] = paths.new_sps
        fault = missing | path_fault | ~inside
        if carried is not None:
            fault[0] = True
        return Candidates(
            at=at,
            vi=vi,
            gfn=gfn,
            seg=seg,
            key=key,
            inside=inside,
            missing=missing,
            present0=inside & ~missing,
            whole_group=whole[kept],
            edge_group=inside & groups.prefetching[seg] & ~group_inside[kept],
            paths=paths,
            new_sps=new_sps,
            fault=fault,
        )

    def _can_fault(
        self, key: np.ndarray, inside: np.ndarray, whole: np.ndarray, missing: np.ndarray
    ) -> np.ndarray:
        """Which of the located accesses can fault.

        Every MMIO access (rule 1); of the others, the first access to each leaf key (a later
        one finds the leaf installed and its path linked by the first). In a whole-slot group
        (rule 3e), only the group's first access (the accesses share their path, so only the
        first can be the first under a missing or unlinked SP) and its first access to a
        missing leaf (whose fault fills the group).
        """
        shift = self.tables.groups.shift
        keep = np.ones(len(key), dtype=bool)
        other = np.flatnonzero(inside & ~whole)
        if len(other):
            keep[other] = self.first_key(key[other], other)
        grouped = np.flatnonzero(whole)
        if len(grouped):
            keep[grouped] = self.first_group(key[grouped] >> shift, grouped)
            first_missing = np.flatnonzero(whole & missing)
            keep[first_missing] |= self.first_group(key[first_missing] >> shift, first_missing)
        return keep

    def _paths(self, vi: np.ndarray, gfn: np.ndarray, seg: np.ndarray, inside: np.ndarray) -> Paths:
        """The paths of the candidates whose leaf's SP is not reachable (see :class:`Paths`)."""
        lay = self.tables.lay
        sps = self.state.sps
        held_by = np.where(inside, lay.holder(seg, gfn), lay.n_sps)
        with_path = np.flatnonzero(inside & ~self.state.hits.reach[held_by])
        sp_ids = self.tables.paths(vi[with_path], gfn[with_path], seg[with_path])
        unlinked = ~sps.linked[sp_ids]  # (the sentinel, off every path, reads as linked)
        first = np.zeros(sp_ids.shape, dtype=bool)
        for d in range(len(sp_ids)):
            unlinked_cols = np.flatnonzero(unlinked[d])
            if len(unlinked_cols):
                first[d, unlinked_cols] = self.first_sp(sp_ids[d, unlinked_cols], unlinked_cols)
        return Paths(len(vi), with_path, sp_ids, first, sps.exists[sp_ids])
