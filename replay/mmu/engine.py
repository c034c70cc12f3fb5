"""The vectorized engine: MODEL.md over numpy arrays, an epoch at a time.

Between two state-removing events the MMU state only grows (leaves are installed, SPs allocated
or relinked), so a run of accesses -- an *epoch* -- is one batch of array operations:

* an access whose leaf is present and whose leaf's SP is reachable (it and every SP above it
  exist and are linked) at the epoch's start hits; nothing else needs looking at for it;
* among the rest, the faults are the first access to each missing leaf (to each prefetch group,
  rule 3e) and the first access under each SP that is missing or unlinked (rules 3d, 20);
* each fault's new and relinked SPs are the SPs on its path whose first access it is;
* per-vCPU cache levels follow from a cumulative sum of consumption, the refill points found by
  ``searchsorted`` (rule 3a).

Only host events (reclaim passes and their scans, ``shrink``, ``unmap``, ``zap_all``), the
shadow_direct page limit (rule 13) and prefetch groups that straddle a slot edge split an epoch;
they act on the arrays between epochs. The scalar engine (``replay.mmu.reference``) is the
oracle: tests hold this engine to its fault and scan rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from replay._arrays import concat_ranges, stable_order, starts_of_runs
from replay.mmu.config import Attribution, Cause, CostModel, MmuConfig, Policy, Refill
from replay.mmu.layout import VM_SHIFT, Layout
from replay.mmu.results import EngineResult, FaultConsumer, FaultRows, ScanRow
from replay.mmu.shrinker import shrink_slab_pass
from replay.trace.schema import EVENT_CODE, SOURCES

if TYPE_CHECKING:
    from replay.trace.reader import EventBatch
    from replay.trace.schema import TraceMeta

ACCESS = EVENT_CODE["access"]
_RECLAIM, _SHRINK, _UNMAP = EVENT_CODE["reclaim"], EVENT_CODE["shrink"], EVENT_CODE["unmap"]
# Plain ints for the hot paths (an Enum member lookup costs more than the numpy call).
_MMIO, _ZAPPED = int(Cause.MMIO), int(Cause.ZAPPED)
_NO_REFILL, _NATURAL, _SHRINKER = int(Refill.NONE), int(Refill.NATURAL), int(Refill.SHRINKER)
_ATTR_NONE, _ATTR_CACHE = int(Attribution.NONE), int(Attribution.CACHE_EVICTION)
_ATTR_ZAPPED = int(Attribution.ZAPPED_PAGE_TABLES)
_EIGHT_TRUE = np.frombuffer(np.ones(8, dtype=bool).tobytes(), dtype=np.uint64)[0]
"""Eight bools of True as one 64-bit word."""
_GATHER_FLAGS = np.uint64(0x0102040810204080)
"""Times a word of eight 0/1 bytes: byte i's bit lands at bit 56 + i (little-endian)."""


class VectorEngine:
    """Replays a trace with numpy; same interface and results as the reference engine."""

    def __init__(
        self,
        meta: TraceMeta,
        policy: Policy,
        cfg: MmuConfig,
        costs: CostModel,
        sink: FaultConsumer | None = None,
    ) -> None:
        self.meta = meta
        self.policy = policy
        self.cfg = cfg
        self.costs = costs
        n_max = [cfg.n_max_mmu_pages(vm.guest_pages) for vm in meta.vms]
        lay = self.lay = Layout.build(meta, n_max)
        # Leaf state (rule 20's last-removal cause; 0 = never removed = cold).
        # 512 entries more than keys, never set: _fast_keys sends an access it cannot place to
        # one of them (key n_keys plus its offset in its 2 MiB block), so its ``present`` is
        # False with no mask.
        self.present = np.zeros(lay.n_keys + 512, dtype=bool)
        self.cause = np.zeros(lay.n_keys, dtype=np.int8)
        # SP state; index n_sps is a sentinel (the roots' parent), never live.
        self.exists = np.zeros(lay.n_sps + 1, dtype=bool)
        self.linked = np.zeros(lay.n_sps + 1, dtype=bool)
        self.linked[lay.n_sps] = True  # the sentinel reads as linked: never unlinked on a path
        self.ucause = np.zeros(lay.n_sps + 1, dtype=np.int8)
        self.seq = np.zeros(lay.n_sps + 1, dtype=np.int64)
        self.live = np.zeros(lay.n_vms, dtype=np.int64)
        self.next_seq = 0
        # vCPU caches (section 2): shadow_page, page_header, pte_list_desc (shadow_direct).
        self.sp_cache = np.zeros(lay.n_vcpus, dtype=np.int64)
        self.ph_cache = np.zeros(lay.n_vcpus, dtype=np.int64)
        self.pl_cache = np.zeros(lay.n_vcpus, dtype=np.int64)
        self.emptied = np.zeros(lay.n_vcpus, dtype=bool)
        self.busy_until = np.full(lay.n_vcpus, -(1 << 62), dtype=np.int64)
        self.vcpu_shadow = np.repeat(lay.shadow_direct, [vm.vcpus for vm in meta.vms])
        self.vm_list = [vm.id for vm in meta.vms]
        self.nr_deferred = 0
        self.last_reclaim_t: int | None = None
        self.faults = sink if sink is not None else FaultRows()
        self.scans: list[ScanRow] = []
        self.sp_removals: list[tuple[int, int, int, int]] = []
        self.cache_frees: list[tuple[int, int, int, int, int]] = []
        self._zmark = np.zeros(lay.n_sps + 1, dtype=bool)
        self._bits: np.ndarray | None = None
        """``present`` packed 8 leaves to a byte, during a long epoch (see _accesses)."""
        self._pending_recycled = 0
        self._cols = int(lay.root_level.max())
        # _locate's tables: VM id -> packed high bits; segments with a sentinel row 0.
        self._vm_packed = np.zeros(0x10000, dtype=np.uint64)
        self._vm_packed[lay.vm_ids] = np.arange(lay.n_vms, dtype=np.uint64) << np.uint64(VM_SHIFT)
        shift = (9 * (lay.seg_level - 1)).astype(np.uint64)
        offset = lay.seg_key_base - (lay.seg_gfn_lo >> shift).astype(np.int64)
        self._seg_end1 = np.concatenate([[np.uint64(0)], lay.seg_end]).astype(np.uint64)
        self._seg_shift1 = np.concatenate([[np.uint64(63)], shift]).astype(np.uint64)
        self._seg_off1 = np.concatenate([[0], offset]).astype(np.int64).view(np.uint64)
        self._build_path_tables()
        self._build_group_tables()
        self._build_block_lut()
        # An SP is reachable when it and every SP above it exist and are linked; a present leaf
        # held by a reachable SP is a hit (rule 2). Index n_sps, the roots' parent, is reachable.
        self.sp_reach = np.zeros(lay.n_sps + 1, dtype=bool)
        self.sp_reach[lay.n_sps] = True
        self._build_fast_table()
        # First-occurrence tests over SP ids, over leaf keys and over prefetch groups.
        self._first_sp = _FirstSeen(lay.n_sps + 1)
        self._first_key = _FirstSeen(lay.n_keys)
        self._first_group = _FirstSeen(lay.n_keys >> self._group_shift)

    # -- driving --------------------------------------------------------------------------------

    def feed(self, batch: EventBatch) -> None:
        """Apply a batch: epochs of accesses, and the host events between them (rule 17)."""
        start = 0
        for h in [*batch.host.tolist(), len(batch)]:
            if h > start:
                sl = slice(start, h)
                row0 = batch.start_row + start
                self._accesses(row0, batch.t_ns[sl], batch.vm[sl], batch.vcpu[sl], batch.gpa[sl])
            if h < len(batch):
                self._host_event(batch, h)
            start = h + 1

    def finish(self) -> EngineResult:
        """The replay's results."""
        self.faults.close()
        return EngineResult(
            sink=self.faults,
            scans=self.scans,
            sp_removals=self.sp_removals,
            cache_frees=self.cache_frees,
            nr_deferred=self.nr_deferred,
        )

    # -- accesses -------------------------------------------------------------------------------

    def _accesses(
        self, row0: int, t: np.ndarray, vm: np.ndarray, vcpu: np.ndarray, gpa: np.ndarray
    ) -> None:
        """One epoch, in steps of at most ``_EPOCH_MAX`` accesses.

        A step also ends where the page limit or a slot-edge prefetch group needs it.
        """
        override: int | None = None
        at_most = self._EPOCH_MAX
        # A long epoch tests hits on ``present`` packed 8 leaves to a byte: 8x less memory for
        # the random reads to miss in, for one pass to pack it, kept in step by the commits.
        long = self._fast_key is not None and len(t) * self._PACK_FROM >= len(self.present)
        self._bits = self._packed() if long else None
        while len(t):
            done, override = self._epoch(
                row0, t[:at_most], vm[:at_most], vcpu[:at_most], gpa[:at_most], override
            )
            if override is not None and self._bits is not None:
                self._bits = self._packed()  # the page limit zapped tables: leaves went
            row0 += done
            t, vm, vcpu, gpa = t[done:], vm[done:], vcpu[done:], gpa[done:]
        self._bits = None  # host events change ``present`` between epochs

    def _packed(self) -> np.ndarray:
        return np.packbits(self.present, bitorder="little")

    def _mirror(self, keys: np.ndarray) -> None:
        """Bring the packed copy of ``present`` (if any) up to date at ``keys``."""
        if self._bits is None or not len(keys):
            return
        byte = keys >> 3
        # Eight flags (bytes of 0 or 1) as one word; the multiply gathers flag i into bit
        # 56 + i with no carries (checked over all 256 patterns in the tests).
        words = self.present.view(np.uint64)[byte]
        words *= _GATHER_FLAGS
        words >>= np.uint64(56)
        self._bits[byte] = words

    _EPOCH_MAX = 1 << 18
    """Accesses per step of an epoch. The state only grows within an epoch, so any prefix is an
    epoch of its own and the rows do not change; bounded steps bound the size of the step's
    temporaries (peak RSS of a 50 M replay 690 -> 550 MiB, and fewer fresh pages for the kernel
    to zero) for no measurable cost in time."""

    _LUT_MAX = 1 << 25
    """Largest 2 MiB-block table (entries) worth building; beyond, _locate searches."""

    def _build_block_lut(self) -> None:
        """Tabulate, per VM, the segment of every 2 MiB block from gfn 0 to its last slot.

        Entries are sentinel-shifted segment indexes: 0 for a block outside every slot, -1 for
        a block a segment edge cuts. One extra entry per VM (0) catches every block beyond the
        last slot.
        """
        lay = self.lay
        seg_hi = lay.seg_gfn_hi
        seg_lo = lay.seg_gfn_lo.astype(np.int64)
        last = np.zeros(lay.n_vms, dtype=np.int64)
        for vi in range(lay.n_vms):
            mine = lay.seg_vm == vi
            last[vi] = (int(seg_hi[mine].max()) - 1) >> 9
        total = int((last + 2).sum())
        self._block_lut = None
        if total > self._LUT_MAX:
            return
        lut = np.zeros(total, dtype=np.int64)
        base = np.concatenate([[0], np.cumsum(last + 2)[:-1]])
        for k in range(len(seg_lo)):
            vi = int(lay.seg_vm[k])
            a, b = int(seg_lo[k]), int(seg_hi[k])
            first_full, end_full = -(-a // 512), b // 512  # blocks wholly inside [a, b)
            if first_full < end_full:
                lut[base[vi] + first_full : base[vi] + end_full] = k + 1
            for blk in {a >> 9, (b - 1) >> 9}:  # blocks the segment only partly covers
                if not (first_full <= blk < end_full):
                    lut[base[vi] + blk] = -1
        self._block_lut = lut
        self._lut_base = np.zeros(0x10000, dtype=np.int64)
        self._lut_last = np.zeros(0x10000, dtype=np.int64)
        self._lut_base[lay.vm_ids] = base
        self._lut_last[lay.vm_ids] = last + 1

    def _build_fast_table(self) -> None:
        """Tabulate, per (VM id, 2 MiB block), how an access there finds its leaf key.

        For a block wholly inside one leaf segment, the key of its first gfn and a mask: 511
        for 4 KiB leaves (key = base + gfn % 512), 0 for huge ones (one key for the block).
        Every other block -- outside every slot, cut by a segment edge, or under an SP that is
        not reachable -- gets key ``n_keys``: ``present`` is never set from there on, so the
        access is not a hit and takes the full path (rules 1, 2, 3b). The live table is the
        static one masked by reachability, refreshed per VM whenever that changes.
        """
        self._fast_key: np.ndarray | None = None
        lay = self.lay
        if self._block_lut is None:
            return
        width = int(self._lut_last.max()) + 1  # every VM's blocks and one past its last slot
        self._fast_shift = max(1, (width - 1).bit_length())
        rows = int(lay.vm_ids.max()) + 1
        if rows << self._fast_shift > self._LUT_MAX:
            return
        stride = 1 << self._fast_shift
        key = np.full(rows * stride, lay.n_keys, dtype=np.int64)
        mask = np.zeros(rows * stride, dtype=np.int64)
        holder = np.full(rows * stride, lay.n_sps, dtype=np.int64)
        for vi in range(lay.n_vms):
            row = int(lay.vm_ids[vi]) * stride
            base = int(self._lut_base[lay.vm_ids[vi]])
            seg1 = self._block_lut[base : base + int(self._lut_last[lay.vm_ids[vi]])]
            blocks = np.flatnonzero(seg1 > 0)
            seg = seg1[blocks]  # sentinel-shifted: the tables' row for the segment
            first_gfn = (blocks << 9).astype(np.uint64)
            k = ((first_gfn >> self._seg_shift1[seg]) + self._seg_off1[seg]).view(np.int64)
            level = lay.seg_level[seg - 1]
            key[row + blocks] = k
            mask[row + blocks] = np.where(level == 1, 511, 0)
            holder[row + blocks] = lay.holder(seg - 1, first_gfn)
        self._fast_static = key
        self._fast_key = key.copy()
        self._fast_mask = mask
        self._fast_holder = holder
        self._fast_stride = stride
        for vi in range(lay.n_vms):
            self._refresh_fast(vi)

    def _refresh_fast(self, vi: int) -> None:
        """Mask VM ``vi``'s blocks whose leaf-holding SP is not reachable (after a change)."""
        if self._fast_key is None:
            return
        row = int(self.lay.vm_ids[vi]) * self._fast_stride
        part = slice(row, row + self._fast_stride)
        reach = self.sp_reach[self._fast_holder[part]]
        self._fast_key[part] = np.where(reach, self._fast_static[part], self.lay.n_keys)

    _CHUNK = 1 << 16
    """Accesses per step of the hit test: its temporaries stay in the CPU's caches (and out of
    fresh pages from the kernel), about 2.5x faster than whole batches at once."""

    _PACK_FROM = 16
    """An epoch of n accesses tests hits on a bit-packed copy of ``present`` when n times this
    reaches the number of leaves (packing costs a pass over them)."""

    def _hits(self, vm: np.ndarray, gpa: np.ndarray) -> np.ndarray:
        """Rule 2 for every access of an epoch: its leaf is present and reachable.

        Through the fast table (see _build_fast_table), a step of ``_CHUNK`` accesses at a time.
        """
        table = self._fast_key
        assert table is not None
        n = len(vm)
        hit = np.empty(n, dtype=bool)
        step = self._CHUNK
        gfn = np.empty(min(n, step), dtype=np.int64)
        index = np.empty_like(gfn)
        bits = self._bits
        for a in range(0, n, step):
            b = min(a + step, n)
            g, i = gfn[: b - a], index[: b - a]
            np.right_shift(gpa[a:b].view(np.int64), 12, out=g)
            np.right_shift(g, 9, out=i)
            np.minimum(i, self._fast_stride - 1, out=i)
            i |= vm[a:b].astype(np.int64) << self._fast_shift
            key = table[i]
            key += g & self._fast_mask[i]
            if bits is None:
                np.take(self.present, key, out=hit[a:b])
            else:
                byte = bits[key >> 3]
                byte >>= (key & 7).astype(np.uint8)
                np.bitwise_and(byte, 1, out=hit[a:b], casting="unsafe")
        return hit

    def _locate(self, vm: np.ndarray, gpa: np.ndarray) -> tuple[np.ndarray, ...]:
        """Rule 1 and 3b for many accesses: gfn, segment, inside-a-slot, leaf key.

        The path of every access the hit test could not settle, so it is lean: the segment
        tables carry a sentinel row 0 (an empty range before everything), so the number of
        segments starting at or before an access indexes them directly; each segment's key
        offset folds its base and first gfn into one number.
        """
        gfn = gpa >> np.uint64(12)
        limit = np.uint64((1 << VM_SHIFT) - 1)  # packing needs gfns below 2**40 (none above is RAM)
        if self._block_lut is not None:
            # The 2 MiB block's segment from a table (most blocks lie in one segment); the
            # blocks a slot edge cuts, and only they, take the binary search below.
            block = (gfn >> np.uint64(9)).view(np.int64)
            index = self._lut_base[vm] + np.minimum(block, self._lut_last[vm])
            seg1 = self._block_lut[index]
            edge = np.flatnonzero(seg1 < 0)
            if len(edge):
                packed = self._vm_packed[vm[edge]] | np.minimum(gfn[edge], limit)
                seg1[edge] = np.searchsorted(self.lay.seg_start, packed, side="right")
                seg1[edge] *= packed < self._seg_end1[seg1[edge]]
            inside = seg1 > 0
        else:
            packed = self._vm_packed[vm] | np.minimum(gfn, limit)
            # Segments starting at or before each access: also its index in the tables with
            # the sentinel row 0 (0 when none does).
            seg1 = np.searchsorted(self.lay.seg_start, packed, side="right")
            inside = packed < self._seg_end1[seg1]
            seg1 *= inside  # outside every slot: the sentinel row
        # The sentinel row shifts by 63 with offset 0: an access outside every slot gets key 0,
        # a valid index, with no extra pass to mask it.
        key = ((gfn >> self._seg_shift1[seg1]) + self._seg_off1[seg1]).view(np.int64)
        return gfn, seg1 - 1, inside, key

    def _build_group_tables(self) -> None:
        """Per segment, what rule 3e needs of a candidate's prefetch group.

        ``_groups``: shadow_direct 4 KiB leaves, whose faults look at their group;
        ``_prefetches``: those of them outside dirty logging, whose whole groups are filled.
        A group (its gfns ``g & ~(grp - 1)`` to ``g | (grp - 1)``) lies in its segment exactly
        when ``_group_lo <= g < _group_hi``: the segment's ends rounded inwards to groups.
        """
        lay = self.lay
        grp = self.cfg.pte_prefetch
        # A power of 2 that divides 512 (MmuConfig checks): a group's keys are then aligned
        # like its gfns (see the layout), and its first key shifted right is its number.
        self._group_shift = grp.bit_length() - 1
        lo = lay.seg_gfn_lo.astype(np.int64)
        self._group_lo = -(-lo // grp) * grp
        self._group_hi = lay.seg_gfn_hi // grp * grp
        self._groups = lay.shadow_direct[lay.seg_vm] & (lay.seg_level == 1)
        self._prefetches = self._groups & ~lay.seg_dirty

    def _build_path_tables(self) -> None:
        """Per segment and path row, the SP id offset and the gfn shift of _paths.

        Row d is level R - d (R the highest root level of any VM). Where that level is not on
        a segment's paths (its VM's root is lower, or its leaf is higher) the offset is
        ``n_sps``, the sentinel SP, and the shift 63, which leaves nothing of a gfn (< 2**40).
        """
        lay = self.lay
        cols = self._cols
        root = lay.root_level[lay.seg_vm]
        self._path_off = np.empty((cols, len(lay.seg_level)), dtype=np.int64)
        self._path_shift = np.empty((cols, len(lay.seg_level)), dtype=np.int64)
        for d in range(1, cols):
            lv = cols - d
            on_path = (lv < root) & (lv >= lay.seg_level)
            self._path_off[d] = np.where(on_path, lay.seg_sp_off[:, lv], lay.n_sps)
            self._path_shift[d] = np.where(on_path, 9 * lv, 63)

    def _paths(self, vi: np.ndarray, gfn: np.ndarray, seg: np.ndarray) -> np.ndarray:
        """SP ids on each access's path, a row per column: root, level R-1, ..., level 1.

        R is the highest root level of any VM. Where a column is not on an access's path (a
        VM with a lower root, a leaf above level 1) it holds ``n_sps``, the sentinel SP that is
        never live.
        """
        paths = np.empty((self._cols, len(vi)), dtype=np.int64)
        paths[0] = self.lay.root_sp[vi]
        g = gfn.view(np.int64)
        for d in range(1, self._cols):
            np.right_shift(g, self._path_shift[d][seg], out=paths[d])
            paths[d] += self._path_off[d][seg]
        return paths

    def _epoch(
        self,
        row0: int,
        t: np.ndarray,
        vm: np.ndarray,
        vcpu: np.ndarray,
        gpa: np.ndarray,
        override: int | None,
    ) -> tuple[int, int | None]:
        """Process a prefix of the accesses; return how many were consumed and an override.

        The accesses are trace rows ``row0`` on. The override is the cause (read before a
        page-limit zap, rule 5) of the first access of the next call.
        """
        lay = self.lay
        if self._fast_key is not None:
            hit = self._hits(vm, gpa)
        else:
            gfn, seg, inside, key = self._locate(vm, gpa)
            seg = np.maximum(seg, 0)
            held_by = self.lay.holder(seg, gfn)
            hit = inside & self.present[key] & self.sp_reach[np.where(inside, held_by, -1)]
        if override is None and hit.all():
            return len(t), None  # every access hits: nothing changes
        cand = np.flatnonzero(~hit)
        if override is not None and (len(cand) == 0 or cand[0] != 0):
            cand = np.concatenate([[0], cand])  # defensive: the overridden access faults
        gfn, seg, inside, key = self._locate(vm[cand], gpa[cand])
        seg = np.maximum(seg, 0)
        g = gfn.view(np.int64)
        # Whole-slot prefetch groups (rule 3e: a group's first leaf fault fills every empty
        # entry of it); a group at a slot edge is prefetched entry by entry (_prefetch_mixed).
        in_seg = (g >= self._group_lo[seg]) & (g < self._group_hi[seg])
        full = inside & self._prefetches[seg] & in_seg
        absent = inside & ~self.present[key]  # (an MMIO access's key is 0, a valid index)
        # Which candidates can fault: every MMIO access (rule 1); of the others, the first
        # access to each leaf key (a later one finds the leaf installed and its path linked by
        # the first). In a whole-slot group, only the group's first access (the accesses share
        # their path, so only the first can be the first under a missing or unlinked SP) and
        # its first access to a missing leaf (whose fault fills the group). Groups are counted
        # by number (a group's keys are aligned like its gfns), in a table pte_prefetch times
        # smaller than one over keys, whose scattered writes then mostly stay in the caches.
        keep = np.ones(len(cand), dtype=bool)
        other = np.flatnonzero(inside & ~full)
        if len(other):
            keep[other] = self._first_key(key[other], other)
        grouped = np.flatnonzero(full)
        if len(grouped):
            keep[grouped] = self._first_group(key[grouped] >> self._group_shift, grouped)
            missing = np.flatnonzero(full & absent)
            keep[missing] |= self._first_group(key[missing] >> self._group_shift, missing)
        # Gathers at the kept positions, not boolean masks: a mask this irregular costs ~4x.
        kept = np.flatnonzero(keep)
        cand = cand[kept]
        # Per candidate.
        c_in = inside[kept]
        c_gfn, c_key, c_seg = gfn[kept], key[kept], seg[kept]
        c_vi = lay.vm_index[vm[cand]]
        c_lv = lay.seg_level[c_seg]
        c_absent = absent[kept]
        present0 = c_in & ~c_absent
        full_group = full[kept]
        mixed_group = c_in & self._groups[c_seg] & ~in_seg[kept]

        # The path matters only where some SP on it is missing or unlinked: there the leaf's
        # SP is not reachable. Elsewhere the whole path is linked, nothing is allocated or
        # relinked, and only the leaf can fault.
        held_by = np.where(c_in, lay.holder(c_seg, c_gfn), lay.n_sps)
        cx = np.flatnonzero(c_in & ~self.sp_reach[held_by])
        x = _Paths.of(self, cx, c_vi, c_gfn, c_seg)
        path_fault = np.zeros(len(cand), dtype=bool)
        path_fault[cx] = x.fault
        new_sps = np.zeros(len(cand), dtype=np.int64)
        new_sps[cx] = x.new_sps

        # Leaf faults: every kept access to a missing leaf. Outside whole-slot groups the kept
        # candidates are one per key; in a group, a kept one that is missing its leaf is the
        # group's first such (the group's first access, if missing, is that one too).
        unit = c_key - (c_gfn.view(np.int64) & (self.cfg.pte_prefetch - 1)) * full_group
        leaf_fault = c_absent
        fault = leaf_fault | path_fault | ~c_in
        if override is not None:
            fault[0] = True

        # Where the epoch must stop: a leaf fault in a slot-edge group (its prefetch is worked
        # out alone, then the epoch resumes after it), or a fault that the page limit stops.
        stop = len(cand)
        keep_last = False
        mixed = np.flatnonzero(leaf_fault & mixed_group)
        if len(mixed):
            stop = int(mixed[0]) + 1
            keep_last = True
        limit_at = self._page_limit_trigger(fault, c_in, c_vi, new_sps, stop, override)
        if limit_at is not None:
            stop = limit_at
            keep_last = False
        sel = np.flatnonzero(fault[:stop])
        consumed = int(cand[stop]) if stop < len(cand) else len(t)
        if keep_last:
            consumed = int(cand[stop - 1]) + 1

        recycled = 0
        if override is not None and len(sel) and sel[0] == 0:
            recycled = self._pending_recycled
        self._commit(
            sel,
            cand,
            row0,
            t,
            vm,
            vcpu,
            c_vi,
            c_gfn,
            c_lv,
            c_key,
            c_in,
            x,
            present0,
            full_group,
            mixed_group,
            unit,
            new_sps,
            override,
            recycled,
        )
        next_override = None
        if limit_at is not None:
            j = int(limit_at)
            vmi = int(c_vi[j])
            next_override = x.cause_of(self, j, present0, c_key)
            self._pending_recycled = self._zap_page_limit(vmi, row0 + int(cand[j]), int(t[cand[j]]))
        return consumed, next_override

    def _page_limit_trigger(
        self,
        fault: np.ndarray,
        c_in: np.ndarray,
        c_vi: np.ndarray,
        new_sps: np.ndarray,
        stop: int,
        override: int | None,
    ) -> int | None:
        """Rule 13: the first fault (before ``stop``) whose VM is short of free SPs."""
        lay = self.lay
        f = np.flatnonzero(fault[:stop] & c_in[:stop] & lay.shadow_direct[c_vi[:stop]])
        if not len(f):
            return None
        # Quick exit: no VM can come within min_free of its limit in this epoch.
        most = self.live + np.bincount(c_vi[f], weights=new_sps[f], minlength=lay.n_vms)
        if (most <= lay.n_max - self.cfg.min_free_mmu_pages).all():
            return None
        vms = c_vi[f]
        order = stable_order(vms)
        vs, adds = vms[order], new_sps[f][order]
        csum = np.cumsum(adds)
        group_start = starts_of_runs(vs)
        base = np.maximum.accumulate(np.where(group_start, csum - adds, 0))
        before = self.live[vs] + (csum - adds - base)
        short = lay.n_max[vs] - before < self.cfg.min_free_mmu_pages
        if override is not None and f[0] == 0:
            short[np.flatnonzero(order == 0)] = False  # the overridden fault had its zap
        if not short.any():
            return None
        return int(f[order[short]].min())

    # -- committing an epoch's faults -----------------------------------------------------------

    def _commit(
        self,
        sel: np.ndarray,
        cand: np.ndarray,
        row0: int,
        t: np.ndarray,
        vm: np.ndarray,
        vcpu: np.ndarray,
        c_vi: np.ndarray,
        c_gfn: np.ndarray,
        c_lv: np.ndarray,
        c_key: np.ndarray,
        c_in: np.ndarray,
        x: _Paths,
        present0: np.ndarray,
        full_group: np.ndarray,
        mixed_group: np.ndarray,
        unit: np.ndarray,
        new_sps: np.ndarray,
        override: int | None,
        recycled: int,
    ) -> None:
        if not len(sel):
            return
        lay = self.lay
        # ``sel`` indexes the candidates; ``at`` the epoch's accesses (t, vm, vcpu; trace row
        # row0 + at).
        at = cand[sel]
        f_in = c_in[sel]
        f_new = new_sps[sel] * f_in
        f_key = c_key[sel]
        # The faults whose path had a missing or unlinked SP, and their rows in ``x``.
        xs, xr = x.rows_of(sel)
        f_relinked = np.zeros(len(sel), dtype=np.int64)
        f_relinked[xs] = x.relinks[xr]
        # Causes (rule 5): a missing leaf takes its last-removal cause; a present leaf cut off
        # (only a fault with a path can have one) the lowest unlinked SP's cause.
        cause = self.cause[f_key]
        cut_off = np.flatnonzero(present0[sel][xs])
        if len(cut_off):
            cut_rows = xr[cut_off]
            cut = x.relink[:, cut_rows]
            lowest = self._cols - 1 - np.argmax(cut[::-1], axis=0)
            cause[xs[cut_off]] = self.ucause[x.paths[lowest, cut_rows]]
        cause = np.where(f_in, cause, _MMIO).astype(np.int8)
        if override is not None and sel[0] == 0:
            cause[0] = override

        # SPs: allocate (creation order = trace order, then top-down) and relink (rule 3d), for
        # the rows of ``x`` that fault here (not those past where the epoch stops).
        chosen = np.zeros(len(x.row_cand), dtype=bool)
        chosen[xr] = True
        alloc_j, alloc_d = np.nonzero((x.alloc & chosen).T)  # by fault, then top-down
        new_ids = x.paths[alloc_d, alloc_j]
        self.exists[new_ids] = True
        self.linked[new_ids] = True
        self.ucause[new_ids] = 0
        self.seq[new_ids] = self.next_seq + np.arange(len(new_ids))
        self.next_seq += len(new_ids)
        if len(new_ids):
            self.live += np.bincount(lay.sp_vm[new_ids], minlength=lay.n_vms)
        relinked_ids = x.paths[x.relink & chosen]
        self.linked[relinked_ids] = True
        self.ucause[relinked_ids] = 0

        # Leaves (rule 3e): each leaf fault installs its leaf; a whole-slot group is filled.
        leaf_f = f_in & ~present0[sel]
        installed = f_key[np.flatnonzero(leaf_f)]
        self.present[installed] = True
        self._mirror(installed)
        fg = np.flatnonzero(leaf_f & full_group[sel])
        if len(fg):
            starts = unit[sel[fg]]
            if self.cfg.pte_prefetch == 8:
                # The group's 8 keys are one aligned word (see the layout): set it whole.
                self.present.view(np.uint64)[starts >> 3] = _EIGHT_TRUE
                if self._bits is not None:
                    self._bits[starts >> 3] = 0xFF
            else:
                for i in range(self.cfg.pte_prefetch):  # the group's consecutive keys
                    self.present[starts + i] = True
                    self._mirror(starts + i)
        # At most one slot-edge group: the epoch stops after it.
        for j in np.flatnonzero(leaf_f & mixed_group[sel]).tolist():
            prefetched = self._prefetch_mixed(int(c_vi[sel[j]]), int(c_gfn[sel[j]]))
            self.present[prefetched] = True
            self._mirror(prefetched)
        if len(new_ids) or len(relinked_ids):
            self._refresh_reach(new_ids, relinked_ids)

        # Caches (rule 3a), costs (rule 18), busy windows (rule 16), attribution (rule 7).
        f_vcpu = vcpu[at]
        g_vcpu = lay.vcpu_base[c_vi[sel]] + f_vcpu.astype(np.int64)
        refill = np.zeros(len(sel), dtype=np.int8)
        pages = np.zeros(len(sel), dtype=np.int64)
        real = np.flatnonzero(f_in)
        if len(real):
            r_refill, r_pages = self._topups(g_vcpu[real], f_new[real])
            refill[real] = r_refill
            pages[real] = r_pages
        f_t = t[at]
        rate: int | np.ndarray = self.costs.refill_page_ns
        if self.last_reclaim_t is not None:
            rate = np.where(
                f_t - self.last_reclaim_t <= self.costs.pressure_window_ns,
                self.costs.refill_page_pressure_ns,
                self.costs.refill_page_ns,
            )
        f_recycled = np.zeros(len(sel), dtype=np.int64)
        if recycled and sel[0] == 0:
            f_recycled[0] = recycled
        est = (
            self.costs.fault_base_ns
            + self.costs.sp_alloc_ns * f_new
            + rate * pages
            + np.where(f_recycled > 0, self.costs.zap_flush_ns, 0)
        )
        est = np.where(f_in, est, self.costs.fault_base_ns).astype(np.int64)
        if len(real):
            np.maximum.at(self.busy_until, g_vcpu[real], f_t[real] + est[real])
        # Rule 7 in arithmetic (np.where costs ~8x on masks this irregular): zapped page
        # tables first, then a refill the shrinker caused.
        zapped = cause == _ZAPPED
        by_cache = (refill == _SHRINKER) & ~zapped
        attribution = (
            _ATTR_NONE
            + (_ATTR_ZAPPED - _ATTR_NONE) * zapped.view(np.int8)
            + (_ATTR_CACHE - _ATTR_NONE) * by_cache.view(np.int8)
        )
        self.faults.add(
            {
                "row": row0 + at,
                "t_ns": f_t,
                "vm": vm[at],
                "vcpu": f_vcpu,
                "gfn": c_gfn[sel],
                "cause": cause,
                "refill": refill,
                "attribution": attribution,
                "leaf_level": c_lv[sel] * f_in,
                "new_sps": f_new,
                "relinked_sps": f_relinked,
                "recycled_sps": f_recycled,
                "pages_refilled": pages,
                "est_ns": est,
            }
        )

    def _topups(self, g_vcpu: np.ndarray, consume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Rule 3a for a run of faults: each vCPU's caches, refilled below their minimum."""
        cap = self.cfg.cache_capacity
        n = len(g_vcpu)
        order = stable_order(g_vcpu)
        v = g_vcpu[order]
        c = consume[order].astype(np.int64)
        starts = np.flatnonzero(starts_of_runs(v))
        ends = np.append(starts[1:], n)
        refilled = np.zeros(n, dtype=bool)
        by_shrinker = np.zeros(n, dtype=bool)
        pages = np.zeros(n, dtype=np.int64)
        # Running consumption, over all faults and within each vCPU's (the same for the
        # shadow_page and page_header caches; the pte_list_desc cache consumes nothing in v1).
        csum = np.cumsum(c)
        running = csum - c
        group_base = np.repeat(running[starts], ends - starts)
        used = (csum, running, running - group_base, csum[ends - 1] - group_base[ends - 1])
        nothing = (np.zeros(n, np.int64),) * 3 + (np.zeros(len(starts), np.int64),)
        vcpus = v[starts]
        caches = [
            (self.sp_cache, self.cfg.min_shadow_page, True, used),
            (self.ph_cache, self.cfg.min_page_header, False, used),
        ]
        shadow = self.vcpu_shadow[v]
        if shadow.any():
            caches.append((self.pl_cache, self.cfg.min_pte_list_desc, False, nothing))
        for level, minimum, is_sp, (csum, running, before, totals) in caches:
            needs = (level[v] - before) < minimum
            if level is self.pl_cache:
                needs &= shadow
            if not needs.any():
                level[vcpus] -= totals
                continue
            need_group = np.logical_or.reduceat(needs, starts)
            level[vcpus[~need_group]] -= totals[~need_group]
            # After a refill the level is back at capacity, so the next refill is the first
            # fault that finds fewer than minimum: searched, for the refills only, on the
            # running total over all faults (it never decreases), clamped to the vCPU's faults.
            # Every vCPU that refills is followed at once, one refill per round: the rounds are
            # as many as the most refills one vCPU makes, not as many as all refills.
            groups = np.flatnonzero(need_group)
            a, b = starts[groups], ends[groups]
            gv = v[a]
            cur = level[gv].astype(np.int64)  # level at the last refill (or the start)
            base = running[a]  # running consumption at that moment
            # The first refill: the first fault that finds cur - (running - base) < minimum.
            pos = np.clip(np.searchsorted(running, base + cur - minimum, side="right"), a, b)
            first_refill = np.ones(len(groups), dtype=bool)
            active = np.flatnonzero(pos < b)
            while len(active):
                p = pos[active]
                prior = running[p]
                # Refill at this fault: top up to capacity from what is left (rule 3a).
                refilled[p] = True
                if is_sp:
                    pages[p] = cap - (cur[active] - (prior - base[active]))
                    firsts = first_refill[active]
                    flagged = firsts & self.emptied[gv[active]]
                    by_shrinker[p[flagged]] = True
                    self.emptied[gv[active][firsts]] = False
                first_refill[active] = False
                cur[active] = cap
                base[active] = prior
                after_refill = np.searchsorted(running, prior + (cap - minimum), side="right")
                pos[active] = np.minimum(after_refill, b[active])
                active = active[pos[active] < b[active]]
            level[gv] = cur - (csum[b - 1] - base)
        out_refill = np.where(
            by_shrinker, _SHRINKER, np.where(refilled, _NATURAL, _NO_REFILL)
        ).astype(np.int8)
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.arange(n)
        return out_refill[inverse], pages[inverse]

    def _prefetch_mixed(self, vi: int, gfn: int) -> np.ndarray:
        """Rule 3e, entry by entry, for a group that straddles a slot edge."""
        lay = self.lay
        grp = self.cfg.pte_prefetch
        group = gfn & ~(grp - 1)
        gfns = np.arange(group, group + grp, dtype=np.uint64)
        vms = np.full(grp, lay.vm_ids[vi], dtype=np.uint16)
        _, seg, inside, key = self._locate(vms, gfns << np.uint64(12))
        seg = np.maximum(seg, 0)
        has_leaf = inside & self.present[key]
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

    def _refresh_reach(self, new_ids: np.ndarray, relinked_ids: np.ndarray) -> None:
        """Update SP reachability after faults allocated ``new_ids`` and relinked the others.

        A VM where a table was relinked is recomputed top-down (the relinked table's linked
        descendants become reachable again). Where tables were only allocated, each is on a
        faulting path whose tables above it were linked or allocated by the same faults, so
        the new tables, and nothing else, become reachable.
        """
        vm_of = self.lay.sp_vm
        relinked_vms = set(vm_of[relinked_ids].tolist())
        for vi in relinked_vms:
            self._reach_vm(vi)
        self.sp_reach[new_ids] = True
        for vi in set(vm_of[new_ids].tolist()) - relinked_vms:
            self._refresh_fast(vi)

    def _reach_vm(self, vi: int) -> None:
        lay = self.lay
        ok = self.sp_reach
        for lo, hi in lay.level_blocks[vi]:
            ok[lo:hi] = self.exists[lo:hi] & self.linked[lo:hi] & ok[lay.sp_parent[lo:hi]]
        self._refresh_fast(vi)

    # -- removals -------------------------------------------------------------------------------

    def _zap(self, vi: int, zap_ids: np.ndarray, cause: Cause) -> None:
        """Zap SPs of one VM (rule 11): drop their leaves, unlink their children, free them."""
        lay = self.lay
        z = self._zmark
        z[zap_ids] = True
        # Leaves held by the zapped SPs: a PT holds exactly the keys under it; a higher table
        # holds the huge leaves among the keys under it (few tables, so scanned).
        level = lay.sp_level[zap_ids]
        pts = zap_ids[level == 1]
        lo, hi = lay.sp_key_lo[pts], lay.sp_key_hi[pts]
        # A PT whose keys lie in one aligned row of 512 (all but a PT that a slot edge cuts, see
        # the layout) is worked on as that row, whole.
        one_row = (lo >> 9) == ((hi - 1) >> 9)
        rows = lo[one_row] >> 9
        if len(rows):
            present = self.present[: lay.n_keys].reshape(-1, 512)
            causes = self.cause.reshape(-1, 512)
            dropping = present[rows]
            if dropping.any():
                # The dropped leaves' causes become ``cause`` (rule 20), in arithmetic: a masked
                # store is ~6x slower on masks this irregular.
                row_causes = causes[rows]
                row_causes -= (row_causes - np.int8(cause)) * dropping.view(np.int8)
                causes[rows] = row_causes
                present[rows] = False
        # The other PTs (distinct, so their ranges are disjoint), and the leaves of higher
        # tables.
        held = [lay.held_keys(sp) for sp in zap_ids[lay.holds_huge[zap_ids]].tolist()]
        if not one_row.all():
            held.append(concat_ranges(lo[~one_row], hi[~one_row]))
        if held:
            keys = np.concatenate(held)
            dropped = keys[self.present[keys]]
            self.present[dropped] = False
            self.cause[dropped] = cause
        # Children linked to a zapped SP are unlinked; they and their leaves stay (rule 11).
        s_lo, s_hi = int(lay.vm_sp_lo[vi]), int(lay.vm_sp_hi[vi])
        ids = np.arange(s_lo, s_hi)
        children = ids[
            self.exists[s_lo:s_hi]
            & self.linked[s_lo:s_hi]
            & z[lay.sp_parent[s_lo:s_hi]]
            & ~z[s_lo:s_hi]
        ]
        self.linked[children] = False
        self.ucause[children] = cause
        self.exists[zap_ids] = False
        self.linked[zap_ids] = False
        self.live[vi] -= len(zap_ids)
        z[zap_ids] = False
        self._reach_vm(vi)

    def _oldest(self, vi: int, n: int) -> np.ndarray:
        """The VM's n oldest live SPs, the root excepted (``kvm_mmu_zap_oldest_mmu_pages``)."""
        lay = self.lay
        s_lo, s_hi = int(lay.vm_sp_lo[vi]), int(lay.vm_sp_hi[vi])
        ids = np.flatnonzero(self.exists[s_lo:s_hi]) + s_lo
        ids = ids[ids != lay.root_sp[vi]]
        count = max(n, 1)  # the kernel checks its count after zapping
        if len(ids) > count:
            ids = ids[np.argpartition(self.seq[ids], count - 1)[:count]]
        oldest: np.ndarray = ids
        return oldest

    def _zap_page_limit(self, vi: int, row: int, t: int) -> int:
        """Rules 13 and 26: zap the oldest SPs until refill_pages - avail are counted."""
        avail = max(0, int(self.lay.n_max[vi]) - int(self.live[vi]))
        ids = self._oldest(vi, self.cfg.refill_pages - avail)
        if len(ids):
            self._zap(vi, ids, Cause.RECYCLED)
            self.sp_removals.append((row, t, int(self.lay.vm_ids[vi]), len(ids)))
        return len(ids)

    # -- host events ----------------------------------------------------------------------------

    def _host_event(self, batch: EventBatch, i: int) -> None:
        row = batch.start_row + i
        t = int(batch.t_ns[i])
        kind = int(batch.event[i])
        if kind == _RECLAIM:
            self._reclaim(row, t, SOURCES[batch.source[i]], int(batch.priority[i]))
        elif kind == _SHRINK:
            if self.policy != "none":
                self._scan(row, t, "shrink", None, None, int(batch.nr_to_scan[i]))
        elif kind == _UNMAP:
            self._unmap(int(batch.vm[i]), int(batch.gpa[i]), int(batch.len[i]))
        else:
            self._zap_all(row, t, int(batch.vm[i]))

    def _reclaim(self, row: int, t: int, source: str, priority: int) -> None:
        """Rule 9 (and 24)."""
        self.last_reclaim_t = t
        if source == "memcg" or self.policy == "none":
            return
        if self.policy == "zap":
            count = int(self.live[self.lay.shadow_direct].sum())
        else:
            count = int(self.sp_cache.sum())
        slab = shrink_slab_pass(count, self.nr_deferred, priority, self.cfg)
        for n in slab.scans:
            self._scan(row, t, "reclaim", source, priority, n)
        self.nr_deferred = slab.nr_deferred

    def _scan(
        self, row: int, t: int, event: str, source: str | None, priority: int | None, n: int
    ) -> None:
        vms: list[int] = []
        freed_by_vm: list[int] = []
        lay = self.lay
        if self.policy == "zap":
            # Rule 11: one VM per call, looking at no more than n VMs.
            for looked, vm_id in enumerate(list(self.vm_list)):
                if looked == n:
                    break
                vi = int(lay.vm_index[vm_id])
                if not lay.shadow_direct[vi] or self.live[vi] == 0:
                    continue
                ids = self._oldest(vi, n)
                if len(ids):
                    self._zap(vi, ids, Cause.ZAPPED)
                    self.sp_removals.append((row, t, vm_id, len(ids)))
                self._rotate(vm_id)
                vms, freed_by_vm = [vm_id], [len(ids)]
                break
        else:
            # Rule 12 (21, 23): empty idle vCPUs' shadow_page caches, VM by VM.
            freed = 0
            for vm_id in list(self.vm_list):
                self._rotate(vm_id)
                vi = int(lay.vm_index[vm_id])
                base = int(lay.vcpu_base[vi])
                visited = False
                vm_freed = 0
                for c in range(self.meta.vms[vi].vcpus):
                    g = base + c
                    if t < self.busy_until[g]:
                        continue
                    got = int(self.sp_cache[g])
                    self.sp_cache[g] = 0
                    if got > 0:
                        self.emptied[g] = True
                        self.cache_frees.append((row, t, vm_id, c, got))
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
        total = sum(freed_by_vm)
        flush = self.costs.zap_flush_ns if self.policy == "zap" and total else 0
        self.scans.append(
            ScanRow(
                row, t, event, source, priority, n, total, tuple(vms), tuple(freed_by_vm), flush
            )
        )

    def _rotate(self, vm_id: int) -> None:
        self.vm_list.remove(vm_id)
        self.vm_list.append(vm_id)

    def _unmap(self, vm_id: int, gpa: int, length: int) -> None:
        """Rules 14 and 28."""
        first = gpa >> 12
        end = (gpa + length + 4095) >> 12
        if end <= first:
            return
        vi = int(self.lay.vm_index[vm_id])
        # Keys overlapping [first, end): from the key holding `first` to the last starting < end.
        lo = self.lay.key_floor(vi, first)
        hi = self.lay.key_lower_bound_one(vi, end)
        if hi <= lo:
            return
        hit = np.flatnonzero(self.present[lo:hi]) + lo
        self.present[hit] = False
        self.cause[hit] = Cause.NOTIFIER

    def _zap_all(self, row: int, t: int, vm_id: int) -> None:
        """Rules 15 and 28."""
        lay = self.lay
        vi = int(lay.vm_index[vm_id])
        k_lo, k_hi = int(lay.vm_key_lo[vi]), int(lay.vm_key_hi[vi])
        pres = np.flatnonzero(self.present[k_lo:k_hi]) + k_lo
        self.cause[pres] = Cause.INVALIDATED
        self.present[k_lo:k_hi] = False
        s_lo, s_hi = int(lay.vm_sp_lo[vi]), int(lay.vm_sp_hi[vi])
        if self.live[vi]:
            self.sp_removals.append((row, t, vm_id, int(self.live[vi])))
        self.exists[s_lo:s_hi] = False
        self.linked[s_lo:s_hi] = False
        self.sp_reach[s_lo:s_hi] = False
        self._refresh_fast(vi)
        self.live[vi] = 0


def _count_down(mask: np.ndarray) -> np.ndarray:
    """The True entries of each column of a boolean (levels, n) array (at most 5 levels).

    Row by row as bytes: ``sum(axis=0)`` casts every bool to int64 and was 15x slower.
    """
    rows = mask.view(np.uint8)
    out: np.ndarray = rows[0].copy()
    for row in rows[1:]:
        out += row
    return out


class _FirstSeen:
    """Tells, for (id, position) pairs, which position is the first of its id.

    A scatter-maximum into a table indexed by id, then a gather: cheaper than ``np.unique``
    (no sort). Each call marks with values above every earlier call's (a rising base, less the
    position), so marks left by earlier calls lose to the new ones and the table is never
    cleared between calls, only when the base would overflow.
    """

    def __init__(self, size: int) -> None:
        self.marks = np.zeros(max(size, 1), dtype=np.int32)
        self.base = 0

    def __call__(self, ids: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """``pos`` ascending and distinct; True where ``pos`` is the first of its id."""
        if not len(pos):
            return np.zeros(0, dtype=bool)
        span = int(pos[-1]) + 1
        if self.base + span >= np.iinfo(np.int32).max:
            self.marks[:] = 0
            self.base = 0
        value = (self.base + span - pos).astype(np.int32)  # above base, larger for earlier
        np.maximum.at(self.marks, ids, value)
        self.base += span
        out: np.ndarray = self.marks[ids] == value
        return out


class _Paths:
    """The page-table paths of the candidates whose leaf's SP is not reachable (rules 3d, 20).

    Column ``i`` of ``paths`` lists the SP ids from the root down to the SP holding candidate
    ``cx[i]``'s leaf (see ``VectorEngine._paths``); ``first`` marks, per row, the first access
    under an SP that is missing or unlinked at the epoch's start; such an access allocates
    (``exists0`` False) or relinks (``exists0`` True) it. Rows are levels, so that each level's
    work runs over contiguous memory.
    """

    def __init__(
        self, n: int, cx: np.ndarray, paths: np.ndarray, first: np.ndarray, exists0: np.ndarray
    ) -> None:
        self.row = np.full(n, -1, dtype=np.int64)
        """Each of the ``n`` candidates' row here, -1 for those without one."""
        self.row[cx] = np.arange(len(cx))
        self.row_cand = cx
        self.paths = paths
        self.first = first
        self.exists0 = exists0
        self.alloc = first & ~exists0
        """The SPs each row's access allocates ..."""
        self.relink = first & exists0
        """... and those it relinks."""
        self.fault = first.any(axis=0)
        self.new_sps = _count_down(self.alloc)
        self.relinks = _count_down(self.relink)

    @classmethod
    def of(
        cls,
        engine: VectorEngine,
        cx: np.ndarray,
        c_vi: np.ndarray,
        c_gfn: np.ndarray,
        c_seg: np.ndarray,
    ) -> _Paths:
        paths = engine._paths(c_vi[cx], c_gfn[cx], c_seg[cx])
        # Not linked (the sentinel, off every path, reads as linked).
        unlinked = ~engine.linked[paths]
        exists0 = engine.exists[paths]
        first = np.zeros(paths.shape, dtype=bool)
        for d in range(len(paths)):
            nl_j = np.flatnonzero(unlinked[d])
            if len(nl_j):
                first[d, nl_j] = engine._first_sp(paths[d, nl_j], nl_j)
        return cls(len(c_vi), cx, paths, first, exists0)

    def rows_of(self, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Which of candidates ``sel`` have a row here (positions in ``sel``), and the rows."""
        rows = self.row[sel]
        xs = np.flatnonzero(rows >= 0)
        return xs, rows[xs]

    def cause_of(self, engine: VectorEngine, j: int, present0: np.ndarray, key: np.ndarray) -> int:
        """Rule 5 / 20 for one candidate (used to carry a cause across a page-limit zap)."""
        if present0[j]:
            i = self.row[j]
            ds = np.flatnonzero(self.relink[:, i])
            return int(engine.ucause[self.paths[ds[-1], i]])
        return int(engine.cause[key[j]])
