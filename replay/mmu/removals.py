"""What takes MMU state away, on the vectorized engine's arrays.

Zaps (rules 11 and 13), unmap (rule 14) and zap_all (rule 15).

They run between epochs (a host event) or where an epoch stops (the page limit), never inside
one: an epoch's state only grows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from replay._arrays import concat_ranges
from replay.mmu.config import Cause

if TYPE_CHECKING:
    from replay.mmu.machine import MmuState
    from replay.mmu.state import Leaves


def zap(state: MmuState, vi: int, zap_ids: np.ndarray, cause: Cause) -> None:
    """Zap SPs of one VM (rule 11): drop their leaves, unlink their children, free them.

    The leaves' and the children's causes become ``cause`` (rule 20): ``zapped`` for the
    shrinker, ``recycled`` for the page limit (rule 13).
    """
    lay, sps = state.lay, state.sps
    marked = sps.zap_mark
    marked[zap_ids] = True
    _drop_held_leaves(state, zap_ids, cause)
    # Children linked to a zapped SP are unlinked; they and their leaves stay (rule 11).
    s_lo, s_hi = int(lay.vm_sp_lo[vi]), int(lay.vm_sp_hi[vi])
    ids = np.arange(s_lo, s_hi)
    children = ids[
        sps.exists[s_lo:s_hi]
        & sps.linked[s_lo:s_hi]
        & marked[lay.sp_parent[s_lo:s_hi]]
        & ~marked[s_lo:s_hi]
    ]
    sps.linked[children] = False
    sps.unlink_cause[children] = cause
    sps.exists[zap_ids] = False
    sps.linked[zap_ids] = False
    sps.live[vi] -= len(zap_ids)
    marked[zap_ids] = False
    state.hits.recompute_vm(vi)


def _drop_held_leaves(state: MmuState, zap_ids: np.ndarray, cause: Cause) -> None:
    """Drop the leaves the zapped SPs hold, recording ``cause`` for them (rule 20).

    A PT holds exactly the keys under it; a higher table holds the huge leaves among the keys
    under it (few tables, so scanned).
    """
    lay, leaves = state.lay, state.leaves
    level = lay.sp_level[zap_ids]
    pts = zap_ids[level == 1]
    lo, hi = lay.sp_key_lo[pts], lay.sp_key_hi[pts]
    # A PT whose keys lie in one aligned row of 512 (all but a PT that a slot edge cuts, see
    # the layout) is worked on as that row, whole.
    one_row = (lo >> 9) == ((hi - 1) >> 9)
    rows = lo[one_row] >> 9
    if len(rows):
        _drop_rows(leaves, lay.n_keys, rows, cause)
    # The other PTs (distinct, so their ranges are disjoint), and the leaves of higher tables.
    held = [lay.held_keys(sp) for sp in zap_ids[lay.holds_huge[zap_ids]].tolist()]
    if not one_row.all():
        held.append(concat_ranges(lo[~one_row], hi[~one_row]))
    if held:
        keys = np.concatenate(held)
        dropped = keys[leaves.present[keys]]
        leaves.present[dropped] = False
        leaves.cause[dropped] = cause


def _drop_rows(leaves: Leaves, n_keys: int, rows: np.ndarray, cause: Cause) -> None:
    """Drop every present leaf of the aligned rows of 512 keys ``rows``."""
    present = leaves.present[:n_keys].reshape(-1, 512)
    causes = leaves.cause.reshape(-1, 512)
    dropping = present[rows]
    if dropping.any():
        # The dropped leaves' causes become ``cause``, in arithmetic: a store through a mask
        # this irregular costs far more than the two passes of arithmetic.
        row_causes = causes[rows]
        row_causes -= (row_causes - np.int8(cause)) * dropping.view(np.int8)
        causes[rows] = row_causes
        present[rows] = False


def unmap(state: MmuState, vi: int, gpa: int, length: int) -> None:
    """Rules 14 and 28: drop the leaves overlapping the range (huge ones whole); SPs stay."""
    first = gpa >> 12
    end = (gpa + length + 4095) >> 12  # the end is rounded up to a page
    if end <= first:
        return
    lay, leaves = state.lay, state.leaves
    # Keys overlapping [first, end): from the key holding `first` to the last starting < end.
    lo = lay.key_floor(vi, first)
    hi = lay.key_lower_bound_one(vi, end)
    if hi <= lo:
        return
    hit = np.flatnonzero(leaves.present[lo:hi]) + lo
    leaves.present[hit] = False
    leaves.cause[hit] = Cause.NOTIFIER


def zap_all(state: MmuState, vi: int) -> int:
    """Rules 15 and 28: every SP and leaf of the VM goes, the root too.

    Every leaf present at that moment, cut-off ones included, gets cause ``invalidated``.
    Returns how many SPs were live.
    """
    lay, leaves, sps = state.lay, state.leaves, state.sps
    k_lo, k_hi = int(lay.vm_key_lo[vi]), int(lay.vm_key_hi[vi])
    present = np.flatnonzero(leaves.present[k_lo:k_hi]) + k_lo
    leaves.cause[present] = Cause.INVALIDATED
    leaves.present[k_lo:k_hi] = False
    s_lo, s_hi = int(lay.vm_sp_lo[vi]), int(lay.vm_sp_hi[vi])
    freed = int(sps.live[vi])
    sps.exists[s_lo:s_hi] = False
    sps.linked[s_lo:s_hi] = False
    state.hits.clear_vm(vi)
    sps.live[vi] = 0
    return freed
