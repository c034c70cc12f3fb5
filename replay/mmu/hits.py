"""Rule 2 over arrays: which SPs are reachable, and which accesses of an epoch hit.

An SP is *reachable* when it and every SP above it exist and are linked; an access hits when
its leaf is present and held by a reachable SP (rule 2: "a leaf covering the gfn is present and
its SP path is linked"). Reachability changes only between epochs and at an epoch's commits, so
it is kept as a flag per SP, and the hit test reads it through the fast table
(``replay.mmu.tables.FastTable``) masked by it: a block whose leaf-holding SP is not reachable
points at a key that is never present, so the test itself is one gather per access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from replay._arrays import concat_ranges

if TYPE_CHECKING:
    from replay.mmu.state import Leaves, Sps
    from replay.mmu.tables import LookupTables

_PAGE_SHIFT = np.uint64(12)


class HitTest:
    """SP reachability, the fast table masked by it, and the hit test of an epoch (rule 2)."""

    CHUNK = 1 << 16
    """Accesses per step of the hit test: its temporaries stay in the CPU's caches, and out of
    fresh pages the kernel would have to zero, instead of spanning whole batches."""

    def __init__(self, tables: LookupTables, sps: Sps) -> None:
        lay = tables.lay
        self.tables = tables
        self.sps = sps
        self.reach = np.zeros(lay.n_sps + 1, dtype=bool)
        """Per SP, reachable or not. Index ``n_sps``, the roots' parent, is always reachable."""
        self.reach[lay.n_sps] = True
        self.live_key: np.ndarray | None = None
        """The fast table's keys with every block whose leaf-holding SP is not reachable sent
        to ``n_keys``: state, refreshed per VM whenever that VM's reachability changes."""
        self._held_lo = np.zeros(lay.n_sps + 1, dtype=np.int64)
        """Per SP, the first fast-table row whose leaves it holds ..."""
        self._held_hi = np.zeros(lay.n_sps + 1, dtype=np.int64)
        """... and one past the last (empty for an SP that holds none)."""
        if tables.fast is not None:
            self.live_key = tables.fast.key.copy()
            rows = np.arange(len(tables.fast.holder), dtype=np.int64)
            self._held_lo[:] = len(rows)
            np.minimum.at(self._held_lo, tables.fast.holder, rows)
            np.maximum.at(self._held_hi, tables.fast.holder, rows + 1)
            np.minimum(self._held_lo, self._held_hi, out=self._held_lo)
            for vi in range(lay.n_vms):
                self._refresh_rows(vi)

    def _refresh_rows(self, vi: int) -> None:
        """Mask VM ``vi``'s blocks whose leaf-holding SP is not reachable (after a change)."""
        fast = self.tables.fast
        if fast is None or self.live_key is None:
            return
        row = int(self.tables.lay.vm_ids[vi]) * fast.stride
        rows = slice(row, row + fast.stride)
        reachable = self.reach[fast.holder[rows]]
        self.live_key[rows] = np.where(reachable, fast.key[rows], self.tables.lay.n_keys)

    def recompute_vm(self, vi: int) -> None:
        """Recompute VM ``vi``'s reachability top-down, from its SPs' exists and linked flags."""
        lay = self.tables.lay
        ok = self.reach
        exists, linked = self.sps.exists, self.sps.linked
        for lo, hi in lay.level_blocks[vi]:
            ok[lo:hi] = exists[lo:hi] & linked[lo:hi] & ok[lay.sp_parent[lo:hi]]
        self._refresh_rows(vi)

    def after_faults(self, new_ids: np.ndarray, relinked_ids: np.ndarray) -> None:
        """Update reachability after faults allocated ``new_ids`` and relinked the others.

        A VM where a table was relinked is recomputed top-down (the relinked table's linked
        descendants become reachable again). Where tables were only allocated, each is on a
        faulting path whose tables above it were linked or allocated by the same faults, so
        the new tables, and nothing else, become reachable.
        """
        vm_of = self.tables.lay.sp_vm
        for vi in set(vm_of[relinked_ids].tolist()):
            self.recompute_vm(vi)
        self.reach[new_ids] = True
        self._refresh_held(new_ids)

    def _refresh_held(self, ids: np.ndarray) -> None:
        """Re-mask the fast table's rows whose leaves SPs ``ids`` hold (they became reachable).

        Only those rows can change when only ``ids`` change (rule 2 reads a leaf's own SP's
        reachability): a few rows per new SP, where a VM's whole table is thousands.
        """
        fast = self.tables.fast
        if fast is None or self.live_key is None or not len(ids):
            return
        rows = concat_ranges(self._held_lo[ids], self._held_hi[ids])
        live = self.reach[fast.holder[rows]]
        self.live_key[rows] = np.where(live, fast.key[rows], self.tables.lay.n_keys)

    def clear_vm(self, vi: int) -> None:
        """No SP of VM ``vi`` is reachable any more (rule 15 freed them all)."""
        lay = self.tables.lay
        self.reach[int(lay.vm_sp_lo[vi]) : int(lay.vm_sp_hi[vi])] = False
        self._refresh_rows(vi)

    def __call__(self, vm: np.ndarray, gpa: np.ndarray, leaves: Leaves) -> np.ndarray:
        """Rule 2 for every access of an epoch: its leaf is present and reachable."""
        if self.live_key is None:
            return self._without_fast_table(vm, gpa, leaves)
        return self._through_fast_table(vm, gpa, leaves)

    def _without_fast_table(self, vm: np.ndarray, gpa: np.ndarray, leaves: Leaves) -> np.ndarray:
        """The hit test for guests too large for the fast table: every access is placed."""
        gfn, seg, inside, key = self.tables.locate(vm, gpa)
        held_by = self.tables.lay.holder(seg, gfn)
        hit: np.ndarray = inside & leaves.present[key] & self.reach[np.where(inside, held_by, -1)]
        return hit

    def _through_fast_table(self, vm: np.ndarray, gpa: np.ndarray, leaves: Leaves) -> np.ndarray:
        """The hit test through the live fast table, a step of :attr:`CHUNK` accesses at a time.

        The hottest loop of a replay: every access of the trace passes here once. With a packed
        copy of the leaves (``leaves.bits``, kept during a long epoch) the random reads of
        ``present`` land in 8 times less memory.
        """
        fast = self.tables.fast
        table = self.live_key
        assert fast is not None
        assert table is not None
        n = len(vm)
        hit = np.empty(n, dtype=bool)
        chunk = self.CHUNK
        gfn = np.empty(min(n, chunk), dtype=np.int64)
        row = np.empty_like(gfn)
        bits = leaves.bits
        present = leaves.present
        for lo in range(0, n, chunk):
            hi = min(lo + chunk, n)
            chunk_gfn, chunk_row = gfn[: hi - lo], row[: hi - lo]
            # A logical shift of the unsigned gpa: an MMIO gpa at or past 2**63 (rule 1) has a
            # gfn below 2**52 like any other, never a negative one (an arithmetic shift of the
            # int64 view would make it one, and a negative row index).
            np.right_shift(gpa[lo:hi], _PAGE_SHIFT, out=chunk_gfn.view(np.uint64))
            np.right_shift(chunk_gfn, 9, out=chunk_row)
            # Every block past the VM's last slot shares one entry.
            np.minimum(chunk_row, fast.stride - 1, out=chunk_row)
            chunk_row |= vm[lo:hi].astype(np.int64) << fast.shift
            key = table[chunk_row]
            key += chunk_gfn & fast.mask[chunk_row]
            if bits is None:
                np.take(present, key, out=hit[lo:hi])
            else:
                byte = bits[key >> 3]
                byte >>= (key & 7).astype(np.uint8)
                np.bitwise_and(byte, 1, out=hit[lo:hi], casting="unsafe")
        return hit
