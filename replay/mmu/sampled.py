"""Sampled accesses (MODEL.md rules 32 to 35): how a DAMON ``region`` row becomes page accesses.

A region row says that ``nr_accesses`` of the ``window_ns / sample_ns`` sampling checks of its
aggregation window found one random page of ``[gpa, gpa + len)`` accessed. Rule 32 turns it into
accesses only where an access can change the model's state: a leaf whose translation is missing
*because the shrinker zapped it* (rule 5's cause ``zapped``). Everywhere else an access either
hits (rule 2: no change) or would fault for a reason a host without the zapping shrinker logs
itself (cold, notifier, recycled, invalidated): those faults are the logged ``access`` rows, so
a sampled access there adds nothing.

This module holds what both engines share and what does not depend on the MMU state: which of a
region's zapped leaves the row samples (a hash of the trace row and the leaf's first page, rule
33) and on which vCPU (rule 34). Which leaves are zapped is each engine's own business, read from
its own state (``ReferenceEngine.region``; :class:`SampledRegions` for the vectorized engine).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from replay._arrays import concat_ranges
from replay.mmu.config import Cause

if TYPE_CHECKING:
    from collections.abc import Callable

    from replay.mmu.machine import MmuState

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_ZAPPED = int(Cause.ZAPPED)


def mix(row: int, gfn: np.ndarray) -> np.ndarray:
    """64 well-mixed bits per (trace row, gfn), the same in every engine (MODEL.md rule 33).

    ``x = (row << 32) ^ gfn`` times the golden ratio plus it, then splitmix64's finalizer.

    Stateless, so a sample depends only on the row and the page, never on which other pages an
    engine looked at first (rule 33).
    """
    with np.errstate(over="ignore"):
        z = (np.uint64(row) << np.uint64(32)) ^ np.asarray(gfn, dtype=np.uint64)
        z = z * _GOLDEN + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        out: np.ndarray = z ^ (z >> np.uint64(31))
    return out


def chosen(
    row: int,
    first: np.ndarray,
    pages: np.ndarray,
    checks: tuple[int, int],
    vcpus: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Rules 33 and 34: which of a region's zapped leaves the row accesses, and by which vCPU.

    Parameters
    ----------
    row : int
        The region's trace row (the seed, with each leaf's first page).
    first : numpy.ndarray
        Per zapped leaf, its first gfn inside the region.
    pages : numpy.ndarray
        Per zapped leaf, its pages inside the region.
    checks : tuple of int
        ``(nr_accesses, window_ns // sample_ns)``: checks that found the region accessed, of all.
    vcpus : int
        The VM's vCPUs.

    Returns
    -------
    tuple of numpy.ndarray
        A mask of the leaves accessed, and each leaf's vCPU.

    Examples
    --------
    >>> import numpy as np
    >>> hot, _ = chosen(7, np.arange(0, 4000, 8), np.full(500, 8), (20, 20), 4)
    >>> int(hot.sum())  # every check found the region accessed: every leaf
    500
    >>> cold, _ = chosen(7, np.arange(0, 4000, 8), np.full(500, 8), (0, 20), 4)
    >>> int(cold.sum())
    0
    """
    nr, total = checks
    h = mix(row, first)
    vcpu = ((h & np.uint64(0xFFFFFFFF)) % np.uint64(vcpus)).astype(np.int64)
    if nr <= 0:
        return np.zeros(len(first), dtype=bool), vcpu
    if nr >= total:
        return np.ones(len(first), dtype=bool), vcpu
    # Each page is accessed in each sampling interval with probability p = nr / total (the
    # region is taken as uniform, as DAMON takes it); a leaf of m pages is accessed in the
    # window unless all m pages missed all `total` intervals.
    p = nr / total
    q = -np.expm1(np.asarray(pages, dtype=np.float64) * (total * np.log1p(-p)))
    threshold = np.floor(q * 4294967296.0).astype(np.uint64)
    return (h >> np.uint64(32)) < threshold, vcpu


def zapped_leaves(
    vm: Any, lo: int, hi: int, zapped: Callable[[Any, tuple[int, int], list[tuple[int, int]]], bool]
) -> tuple[list[int], list[int]]:
    """The reference engine's side of rule 32: a region's zapped leaves, plainly.

    Every leaf the VM ever had (present, or with a removal cause) that overlaps gfns
    ``[lo, hi)`` and that ``zapped(vm, leaf, path)`` says the shrinker zapped, in gfn order:
    each one's first gfn inside the range and its pages inside it. A leaf never mapped is cold,
    so it is never among them.
    """
    firsts: list[int] = []
    pages: list[int] = []
    touched = sorted(vm.present | set(vm.removal_cause), key=lambda k: k[1] << 9 * (k[0] - 1))
    for level, index in touched:
        start = index << 9 * (level - 1)
        end = start + (1 << 9 * (level - 1))
        if end <= lo or start >= hi:
            continue
        first = max(start, lo)
        path = [(lv, first >> (9 * lv)) for lv in range(vm.root_level, level - 1, -1)]
        if zapped(vm, (level, index), path):
            firsts.append(first)
            pages.append(min(end, hi) - first)
    return firsts, pages


class SampledRegions:
    """The vectorized engine's side of rule 32: a region's zapped leaves, from its arrays.

    Rows of 512 leaf keys that a shrinker zap touched are marked; a region row looks only at
    the marked rows inside it and unmarks those it finds without a zapped leaf, so the cost of a
    region row follows the zapped leaves, not the guest's size.
    """

    def __init__(self, state: MmuState) -> None:
        self.state = state
        lay = state.lay
        self.marked = np.zeros((lay.n_keys + 511) // 512 + 1, dtype=bool)
        self.any = np.zeros(lay.n_vms, dtype=bool)
        """Per VM, whether a shrinker zap ever happened there: else nothing is zapped."""
        self._levels = int(lay.root_level.max()) + 1

    def zapped(self, vi: int, ids: np.ndarray) -> None:
        """Mark the keys under the SPs a shrinker zap freed (their children are under them)."""
        lay = self.state.lay
        if not len(ids):
            return
        self.any[vi] = True
        lo, hi = lay.sp_key_lo[ids], lay.sp_key_hi[ids]
        keep = hi > lo
        # Every row of 512 keys from each SP's first key's to its last key's, in one write.
        self.marked[concat_ranges(lo[keep] >> 9, ((hi[keep] - 1) >> 9) + 1)] = True

    def leaves(self, vi: int, gfn_lo: int, gfn_hi: int) -> tuple[np.ndarray, np.ndarray]:
        """VM ``vi``'s zapped leaves overlapping gfns ``[gfn_lo, gfn_hi)`` (rule 32).

        Returns each one's first gfn inside the range and its pages inside it, in gfn order.
        """
        none = np.zeros(0, dtype=np.int64)
        if not self.any[vi]:
            return none, none
        lay = self.state.lay
        k_lo = lay.key_floor(vi, gfn_lo)
        k_hi = lay.key_lower_bound_one(vi, gfn_hi)
        if k_hi <= k_lo:
            return none, none
        rows = np.flatnonzero(self.marked[k_lo >> 9 : ((k_hi - 1) >> 9) + 1]) + (k_lo >> 9)
        if not len(rows):
            return none, none
        keys = (rows[:, None] * 512 + np.arange(512)).ravel()
        keys = keys[keys < lay.n_keys]
        zapped = self._zapped_keys(keys)
        # A marked row with no zapped leaf left needs no look again (rows wholly looked at).
        left = np.bincount((keys[zapped] >> 9) - rows[0], minlength=int(rows[-1] - rows[0]) + 1)
        self.marked[rows[left[rows - rows[0]] == 0]] = False
        keys = keys[zapped & (keys >= k_lo) & (keys < k_hi)]
        first, span = self._gfns(keys)
        start = np.maximum(first, gfn_lo)
        end = np.minimum(first + span, gfn_hi)
        return start, end - start

    def _zapped_keys(self, keys: np.ndarray) -> np.ndarray:
        """Rules 2, 5 and 20 per key: not a hit, and the cause is ``zapped``."""
        lay, leaves, sps = self.state.lay, self.state.leaves, self.state.sps
        present = leaves.present[keys]
        out: np.ndarray = ~present & (leaves.cause[keys] == _ZAPPED)
        holder = lay.key_holder[keys].astype(np.int64)
        cut = np.flatnonzero(present & ~self.state.hits.reach[holder])
        if len(cut):
            # The cause of a cut-off leaf is that of the lowest unlinked SP of its path.
            sp = holder[cut]
            cause = np.full(len(cut), -1, dtype=np.int64)
            for _ in range(self._levels):
                unlinked = (cause < 0) & sps.exists[sp] & ~sps.linked[sp]
                cause[unlinked] = sps.unlink_cause[sp[unlinked]]
                sp = np.where(sp < lay.n_sps, lay.sp_parent[np.minimum(sp, lay.n_sps - 1)], sp)
            out[cut] = cause == _ZAPPED
        return out

    def _gfns(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each key's first gfn and its leaf's pages."""
        lay = self.state.lay
        seg = np.searchsorted(lay.seg_key_base, keys, side="right") - 1
        shift = 9 * (lay.seg_level[seg].astype(np.int64) - 1)
        first = lay.seg_gfn_lo[seg].astype(np.int64) + ((keys - lay.seg_key_base[seg]) << shift)
        return first, np.left_shift(1, shift)
