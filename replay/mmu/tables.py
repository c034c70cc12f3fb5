"""The vectorized engine's lookup tables: built once per replay from the Layout and MmuConfig.

They answer, for arrays of accesses, questions whose answers never change during a replay
(memslots and their flags are fixed in v1, so every gfn keeps its leaf level, rule 3b): which
leaf segment and leaf key an access has (rules 1, 3b), which SPs lie on its path (rule 3d),
where its prefetch group lies (rule 3e), and, per 2 MiB block, how the hit test finds a leaf
key (rule 2). The state they are read against (present leaves, reachable SPs) is not here:
see ``replay.mmu.state`` and ``replay.mmu.hits``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from replay.mmu.layout import VM_SHIFT

if TYPE_CHECKING:
    from replay.mmu.config import MmuConfig
    from replay.mmu.layout import Layout

BLOCK_TABLE_MAX = 1 << 25
"""Largest 2 MiB-block table (entries) worth building; beyond, :meth:`LookupTables.locate`
binary-searches every access, and the hit test goes without its fast table."""

_GFN_LIMIT = np.uint64((1 << VM_SHIFT) - 1)
"""Packing (VM, gfn) needs gfns below 2**40; none above is RAM, so clamping keeps them outside."""


@dataclass(frozen=True)
class SegmentIndex:
    """Leaf segments as a binary search finds them, each table with a sentinel row 0.

    The sentinel is an empty range before every segment, so the number of segments starting at
    or before an access indexes these tables directly (0 for an access outside every slot), and
    each segment's key arithmetic folds into one shift and one offset.
    """

    vm_high_bits: np.ndarray
    """VM id -> its VM index shifted into a packed (VM, gfn) word's high bits (uint64)."""
    end: np.ndarray
    """Packed (VM, gfn) end of each segment (uint64; 0 for the sentinel)."""
    key_shift: np.ndarray
    """Shift from a gfn to its leaf's index, ``9 * (level - 1)`` (uint64). The sentinel's is 63,
    which leaves nothing of a gfn below 2**40."""
    key_offset: np.ndarray
    """Key base less the leaf index of the segment's first gfn (int64 stored as uint64, so that
    it adds to a shifted gfn with no cast; 0 for the sentinel)."""

    @classmethod
    def build(cls, lay: Layout) -> SegmentIndex:
        """The index of ``lay``'s segments."""
        vm_high_bits = np.zeros(0x10000, dtype=np.uint64)
        vm_high_bits[lay.vm_ids] = np.arange(lay.n_vms, dtype=np.uint64) << np.uint64(VM_SHIFT)
        shift = (9 * (lay.seg_level - 1)).astype(np.uint64)
        offset = lay.seg_key_base - (lay.seg_gfn_lo >> shift).astype(np.int64)
        return cls(
            vm_high_bits=vm_high_bits,
            end=np.concatenate([[np.uint64(0)], lay.seg_end]).astype(np.uint64),
            key_shift=np.concatenate([[np.uint64(63)], shift]).astype(np.uint64),
            key_offset=np.concatenate([[0], offset]).astype(np.int64).view(np.uint64),
        )


@dataclass(frozen=True)
class BlockIndex:
    """Per VM, the segment of every 2 MiB block from gfn 0 to its last slot.

    Most blocks lie in one segment, so a table lookup places most accesses; only the blocks a
    segment edge cuts need the binary search.
    """

    segment: np.ndarray
    """Per block, its segment's row in :class:`SegmentIndex` (segment + 1): 0 for a block
    outside every slot, -1 for a block a segment edge cuts."""
    vm_base: np.ndarray
    """VM id -> index of its block 0 in ``segment``."""
    vm_last: np.ndarray
    """VM id -> one past its last slot's last block: that entry (0) stands for every block
    beyond, so a block number clamped to it needs no bounds check."""

    @classmethod
    def build(cls, lay: Layout) -> BlockIndex | None:
        """The index of ``lay``'s blocks, or None when it would exceed :data:`BLOCK_TABLE_MAX`."""
        seg_hi = lay.seg_gfn_hi
        seg_lo = lay.seg_gfn_lo.astype(np.int64)
        last = np.zeros(lay.n_vms, dtype=np.int64)
        for vi in range(lay.n_vms):
            mine = lay.seg_vm == vi
            last[vi] = (int(seg_hi[mine].max()) - 1) >> 9
        total = int((last + 2).sum())
        if total > BLOCK_TABLE_MAX:
            return None
        segment = np.zeros(total, dtype=np.int64)
        base = np.concatenate([[0], np.cumsum(last + 2)[:-1]])
        for k in range(len(seg_lo)):
            vi = int(lay.seg_vm[k])
            a, b = int(seg_lo[k]), int(seg_hi[k])
            first_full, end_full = -(-a // 512), b // 512  # blocks wholly inside [a, b)
            if first_full < end_full:
                segment[base[vi] + first_full : base[vi] + end_full] = k + 1
            for blk in {a >> 9, (b - 1) >> 9}:  # blocks the segment only partly covers
                if not (first_full <= blk < end_full):
                    segment[base[vi] + blk] = -1
        vm_base = np.zeros(0x10000, dtype=np.int64)
        vm_last = np.zeros(0x10000, dtype=np.int64)
        vm_base[lay.vm_ids] = base
        vm_last[lay.vm_ids] = last + 1
        return cls(segment=segment, vm_base=vm_base, vm_last=vm_last)


@dataclass(frozen=True)
class FastTable:
    """Per (VM id, 2 MiB block), how an access there finds its leaf key: the hit test's table.

    A row is ``VM id << shift | block``. For a block wholly inside one leaf segment: the key of
    its first gfn and a mask, 511 for 4 KiB leaves (key = that key + gfn % 512) and 0 for huge
    ones (one key for the block). Every other block (outside every slot, cut by a segment edge)
    gets key ``n_keys``, whose ``present`` is never set, so the access is not a hit and takes
    the full path (rules 1, 2, 3b). The engine masks this table by reachability
    (``replay.mmu.hits``).
    """

    key: np.ndarray
    """Leaf key of each block's first gfn (``n_keys`` where no single segment holds it)."""
    mask: np.ndarray
    """The bits of a gfn that add to ``key``: 511 for 4 KiB leaves, 0 for huge ones."""
    holder: np.ndarray
    """The SP holding each block's leaves (``n_sps``, the always-reachable sentinel, where
    none)."""
    shift: int
    """Bit position of the VM id in a row."""
    stride: int
    """Entries per VM id, ``1 << shift``: its blocks, and one past its last slot for every
    block beyond."""

    @classmethod
    def build(cls, lay: Layout, blocks: BlockIndex, segments: SegmentIndex) -> FastTable | None:
        """The fast table of ``lay``, or None when it would exceed :data:`BLOCK_TABLE_MAX`."""
        width = int(blocks.vm_last.max()) + 1  # every VM's blocks and one past its last slot
        shift = max(1, (width - 1).bit_length())
        rows = int(lay.vm_ids.max()) + 1
        if rows << shift > BLOCK_TABLE_MAX:
            return None
        stride = 1 << shift
        key = np.full(rows * stride, lay.n_keys, dtype=np.int64)
        mask = np.zeros(rows * stride, dtype=np.int64)
        holder = np.full(rows * stride, lay.n_sps, dtype=np.int64)
        for vi in range(lay.n_vms):
            row = int(lay.vm_ids[vi]) * stride
            base = int(blocks.vm_base[lay.vm_ids[vi]])
            seg1 = blocks.segment[base : base + int(blocks.vm_last[lay.vm_ids[vi]])]
            whole = np.flatnonzero(seg1 > 0)
            seg = seg1[whole]  # sentinel-shifted: the segment's row in the index
            first_gfn = (whole << 9).astype(np.uint64)
            keys = (first_gfn >> segments.key_shift[seg]) + segments.key_offset[seg]
            level = lay.seg_level[seg - 1]
            key[row + whole] = keys.view(np.int64)
            mask[row + whole] = np.where(level == 1, 511, 0)
            holder[row + whole] = lay.holder(seg - 1, first_gfn)
        return cls(key=key, mask=mask, holder=holder, shift=shift, stride=stride)


@dataclass(frozen=True)
class PathTables:
    """Per path row and segment, how a gfn gives the SP id on its path (rule 3d).

    Row d is level R - d (R the highest root level of any VM; row 0, the root, comes from the
    layout). Where that level is not on a segment's paths (its VM's root is lower, or its leaf
    is higher) the offset is ``n_sps``, the sentinel SP, and the shift 63, which leaves nothing
    of a gfn (< 2**40).
    """

    rows: int
    """Rows of a path: R."""
    offset: np.ndarray
    """[row, segment] -> SP id of region 0 of that level (the id less the region)."""
    shift: np.ndarray
    """[row, segment] -> shift from a gfn to its region at that level, ``9 * level``."""

    @classmethod
    def build(cls, lay: Layout) -> PathTables:
        """The path tables of ``lay``."""
        rows = int(lay.root_level.max())
        root = lay.root_level[lay.seg_vm]
        offset = np.empty((rows, len(lay.seg_level)), dtype=np.int64)
        shift = np.empty((rows, len(lay.seg_level)), dtype=np.int64)
        for d in range(1, rows):
            level = rows - d
            on_path = (level < root) & (level >= lay.seg_level)
            offset[d] = np.where(on_path, lay.seg_sp_off[:, level], lay.n_sps)
            shift[d] = np.where(on_path, 9 * level, 63)
        return cls(rows=rows, offset=offset, shift=shift)


@dataclass(frozen=True)
class GroupTables:
    """Per segment, what rule 3e needs of a fault's prefetch group.

    A group (gfns ``g & ~(grp - 1)`` to ``g | (grp - 1)``, ``grp`` = ``pte_prefetch``) lies in
    its segment exactly when ``lo <= g < hi``: the segment's ends rounded inwards to groups.
    """

    shift: int
    """log2 of ``pte_prefetch``. ``pte_prefetch`` is a power of 2 that divides 512 (MmuConfig
    checks), so a group's keys are aligned like its gfns (see the layout), and a key shifted
    right by this numbers its group."""
    lo: np.ndarray
    """First gfn of each segment's first whole group (int64)."""
    hi: np.ndarray
    """One past the last gfn of each segment's last whole group (int64)."""
    prefetching: np.ndarray
    """Segments whose faults look at their group: shadow_direct 4 KiB leaves."""
    filled: np.ndarray
    """Those of them outside dirty logging: a fault in a group that lies in the segment fills
    every empty entry of it."""

    @classmethod
    def build(cls, lay: Layout, cfg: MmuConfig) -> GroupTables:
        """The group tables of ``lay`` for ``cfg.pte_prefetch``."""
        grp = cfg.pte_prefetch
        lo = lay.seg_gfn_lo.astype(np.int64)
        prefetching = lay.shadow_direct[lay.seg_vm] & (lay.seg_level == 1)
        return cls(
            shift=grp.bit_length() - 1,
            lo=-(-lo // grp) * grp,
            hi=lay.seg_gfn_hi // grp * grp,
            prefetching=prefetching,
            filled=prefetching & ~lay.seg_dirty,
        )


@dataclass(frozen=True)
class LookupTables:
    """Every lookup table of the vectorized engine, and the lookups made of them."""

    lay: Layout
    segments: SegmentIndex
    blocks: BlockIndex | None
    """None for guests too large to tabulate: every access is then binary-searched."""
    fast: FastTable | None
    """None when the blocks are not tabulated or the table would be too large."""
    path: PathTables
    groups: GroupTables

    @classmethod
    def build(cls, lay: Layout, cfg: MmuConfig) -> LookupTables:
        """The tables of ``lay`` under ``cfg``."""
        segments = SegmentIndex.build(lay)
        blocks = BlockIndex.build(lay)
        fast = FastTable.build(lay, blocks, segments) if blocks is not None else None
        return cls(lay, segments, blocks, fast, PathTables.build(lay), GroupTables.build(lay, cfg))

    def locate(
        self, vm: np.ndarray, gpa: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Rules 1 and 3b for many accesses: their gfn, segment, inside-a-slot flag, leaf key.

        This places every access the hit test could not settle, so it is lean. An access
        outside every slot gets segment 0 and key 0 (valid indexes, so no pass masks them);
        only its flag tells.
        """
        seg_index = self.segments
        gfn = gpa >> np.uint64(12)
        if self.blocks is not None:
            # The 2 MiB block's segment from the table; the blocks a slot edge cuts, and only
            # they, take the binary search.
            block = (gfn >> np.uint64(9)).view(np.int64)
            index = self.blocks.vm_base[vm] + np.minimum(block, self.blocks.vm_last[vm])
            seg1 = self.blocks.segment[index]
            edge = np.flatnonzero(seg1 < 0)
            if len(edge):
                packed = seg_index.vm_high_bits[vm[edge]] | np.minimum(gfn[edge], _GFN_LIMIT)
                seg1[edge] = np.searchsorted(self.lay.seg_start, packed, side="right")
                seg1[edge] *= packed < seg_index.end[seg1[edge]]
            inside = seg1 > 0
        else:
            packed = seg_index.vm_high_bits[vm] | np.minimum(gfn, _GFN_LIMIT)
            # Segments starting at or before each access: also its row in the index.
            seg1 = np.searchsorted(self.lay.seg_start, packed, side="right")
            inside = packed < seg_index.end[seg1]
            seg1 *= inside  # outside every slot: the sentinel row
        # The sentinel row shifts by 63 with offset 0: an access outside every slot gets key 0.
        key = ((gfn >> seg_index.key_shift[seg1]) + seg_index.key_offset[seg1]).view(np.int64)
        return gfn, np.maximum(seg1 - 1, 0), inside, key

    def paths(self, vi: np.ndarray, gfn: np.ndarray, seg: np.ndarray) -> np.ndarray:
        """SP ids on each access's path (rule 3d), a row per level: root, R-1, ..., level 1.

        R is the highest root level of any VM. Where a row is not on an access's path (a VM
        with a lower root, a leaf above level 1) it holds ``n_sps``, the sentinel SP, which is
        never live and always reads as linked. Rows are levels so that each level's work runs
        over contiguous memory.
        """
        path = self.path
        paths = np.empty((path.rows, len(vi)), dtype=np.int64)
        paths[0] = self.lay.root_sp[vi]
        gfn_signed = gfn.view(np.int64)
        for d in range(1, path.rows):
            np.right_shift(gfn_signed, path.shift[d][seg], out=paths[d])
            paths[d] += path.offset[d][seg]
        return paths
