"""Ids for the vectorized engine: leaf keys and page-table pages (SPs) as array indices.

Every gfn of every memslot has one *leaf key* (rule 3b fixes its leaf level, which never
changes in v1), and every page-table page that can exist has one *SP id*. Both are near-dense
integers across all VMs, so the engine's state is a handful of flat numpy arrays whose size is
bounded by the guests' memory, not by the trace.

A leaf *segment* is a gfn range of one memslot where every gfn has the same leaf level; a slot
splits into at most five (4 KiB head, 2 MiB head, 1 GiB middle, 2 MiB tail, 4 KiB tail). Leaf
keys are numbered in gfn order inside each VM, so the keys under any SP form one id range.
Each segment starts in a fresh block of 512 keys, and a 4 KiB segment's keys are congruent to
their gfns modulo 512: the keys of one page table (PT) within one segment are then one aligned
row of 512, and a prefetch group's 8 keys one aligned word. The padding keys this leaves (at
most 1023 a segment) never hold a leaf.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from functools import cached_property
from itertools import pairwise

import numpy as np

from replay._arrays import concat_ranges
from replay.trace.schema import BACKING_LEVEL, Memslot, TraceMeta

VM_SHIFT = 40
"""A (vm index, gfn) pair packs into one uint64: ``vm << 40 | gfn`` (gfns are below 2**40)."""
MAX_LEVEL = 5
NO_SP = -1


def _leaf_segments(lo: int, hi: int, level: int) -> list[tuple[int, int, int]]:
    """Split gfns [lo, hi) of one slot into runs of one leaf level (rule 3b)."""
    if lo >= hi:
        return []
    if level == 1:
        return [(lo, hi, 1)]
    span = 1 << (9 * (level - 1))
    a = -(-lo // span) * span
    b = hi // span * span
    if a >= b:
        return _leaf_segments(lo, hi, level - 1)
    return [*_leaf_segments(lo, a, level - 1), (a, b, level), *_leaf_segments(b, hi, level - 1)]


@dataclass
class Layout:
    """Static tables mapping gfns to leaf keys and SP ids, for every VM of a trace."""

    n_vms: int
    vm_ids: np.ndarray
    vm_index: np.ndarray
    """VM id -> index in the VM table (65536 entries, -1 for unknown ids)."""
    root_level: np.ndarray
    shadow_direct: np.ndarray
    n_max: np.ndarray
    vcpu_base: np.ndarray
    """Global vCPU index of each VM's vCPU 0."""
    n_vcpus: int
    # Leaf segments, sorted by packed (vm, gfn) start.
    seg_start: np.ndarray
    seg_end: np.ndarray
    seg_gfn_lo: np.ndarray
    seg_gfn_hi: np.ndarray
    """One past each segment's last gfn (int64; ``seg_end`` without the VM bits)."""
    seg_level: np.ndarray
    seg_key_base: np.ndarray
    seg_dirty: np.ndarray
    seg_vm: np.ndarray
    seg_sp_off: np.ndarray
    """[segment, level] -> SP id minus region, for levels 1..4 (0 where the level is unused)."""
    n_keys: int
    vm_key_lo: np.ndarray
    vm_key_hi: np.ndarray
    # SPs.
    n_sps: int
    root_sp: np.ndarray
    sp_level: np.ndarray
    sp_vm: np.ndarray
    sp_parent: np.ndarray
    """Parent SP id (n_sps, a sentinel, for roots)."""
    sp_key_lo: np.ndarray
    sp_key_hi: np.ndarray
    """Leaf keys under each SP: ids [lo, hi)."""
    vm_sp_lo: np.ndarray
    vm_sp_hi: np.ndarray
    level_blocks: list[list[tuple[int, int]]]
    """Per VM, the SP id ranges of each level, root first (SPs are numbered top-down)."""

    @classmethod
    def build(cls, meta: TraceMeta, n_max: list[int]) -> Layout:
        """Build the tables of every VM of ``meta``; ``n_max`` is each VM's page limit."""
        vm_index, vcpu_base, n_vcpus = _vm_tables(meta)
        segs = _Segments.number(meta)
        sps = _SpRegions.number(meta)
        seg_vm, seg_lo, seg_hi = segs.vm, segs.gfn_lo, segs.gfn_hi
        vm_bits = seg_vm.astype(np.uint64) << np.uint64(VM_SHIFT)
        layout = cls(
            n_vms=len(meta.vms),
            vm_ids=np.array([vm.id for vm in meta.vms], dtype=np.int64),
            vm_index=vm_index,
            root_level=np.array([vm.root_level for vm in meta.vms], dtype=np.int64),
            shadow_direct=np.array([vm.mmu_mode == "shadow_direct" for vm in meta.vms]),
            n_max=np.array(n_max, dtype=np.int64),
            vcpu_base=vcpu_base,
            n_vcpus=n_vcpus,
            seg_start=vm_bits | seg_lo.astype(np.uint64),
            seg_end=vm_bits | seg_hi.astype(np.uint64),
            seg_gfn_lo=seg_lo.astype(np.uint64),
            seg_gfn_hi=seg_hi.astype(np.int64),
            seg_level=segs.level,
            seg_key_base=segs.key_base,
            seg_dirty=segs.dirty,
            seg_vm=seg_vm,
            seg_sp_off=sps.segment_offsets(meta, segs),
            n_keys=-(-segs.key_count // 512) * 512,
            vm_key_lo=np.array(segs.vm_key_lo, dtype=np.int64),
            vm_key_hi=np.array(segs.vm_key_hi, dtype=np.int64),
            n_sps=sps.n_sps,
            root_sp=np.array(sps.root_sp, dtype=np.int64),
            sp_level=sps.rows[:, 1].copy(),
            sp_vm=sps.rows[:, 0].copy(),
            sp_parent=sps.parents(meta),
            sp_key_lo=np.zeros(sps.n_sps, dtype=np.int64),
            sp_key_hi=np.zeros(sps.n_sps, dtype=np.int64),
            vm_sp_lo=np.array(sps.vm_sp_lo, dtype=np.int64),
            vm_sp_hi=np.array(sps.vm_sp_hi, dtype=np.int64),
            level_blocks=sps.level_blocks(),
        )
        layout._fill_key_tables(sps.rows, meta)
        return layout

    @cached_property
    def _holder_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Per segment, the id offset of the SPs holding its leaves, and the gfn shift."""
        off = self.seg_sp_off[np.arange(len(self.seg_level)), self.seg_level]
        return off, 9 * self.seg_level

    def holder(self, seg: np.ndarray, gfn: np.ndarray) -> np.ndarray:
        """SP id holding the leaf of each gfn (the level-G SP above it), ``seg`` its segment.

        ``gfn`` holds 64-bit integers (gfns are below 2**40, so uint64 reads as int64).
        """
        off, shift = self._holder_tables
        g = gfn if gfn.dtype == np.int64 else gfn.view(np.int64)
        out: np.ndarray = off[seg] + (g >> shift[seg])
        return out

    @cached_property
    def key_holder(self) -> np.ndarray:
        """SP id holding each leaf key's leaf, for every key.

        Built on first use: 4 bytes a key, which the engine does without (see :meth:`holder`).
        """
        key_holder = np.zeros(self.n_keys, dtype=np.int32)
        for k in range(len(self.seg_level)):
            level = int(self.seg_level[k])
            base = int(self.seg_key_base[k])
            lo, hi = int(self.seg_gfn_lo[k]), int(self.seg_gfn_hi[k])
            n = (hi - lo) >> (9 * (level - 1))
            # The SP holding a key's leaf is the level-G table of its region; a segment's keys
            # share one table per 512 of them, so the table ids repeat in runs.
            first_key = lo >> (9 * (level - 1))  # the segment's keys, counted from gfn 0
            r0, r1 = first_key >> 9, (first_key + n - 1) >> 9
            counts = np.full(r1 - r0 + 1, 512, dtype=np.int64)
            counts[0] -= first_key & 511
            counts[-1] -= 511 - ((first_key + n - 1) & 511)
            tables = np.arange(r0, r1 + 1, dtype=np.int64) + self.seg_sp_off[k, level]
            key_holder[base : base + n] = np.repeat(tables.astype(np.int32), counts)
        return key_holder

    @cached_property
    def _seg_key_end(self) -> np.ndarray:
        """One past each segment's last key."""
        seg_lo = self.seg_gfn_lo.astype(np.int64)
        span = self.seg_gfn_hi - seg_lo
        end: np.ndarray = self.seg_key_base + (span >> (9 * (self.seg_level - 1)))
        return end

    @cached_property
    def holds_huge(self) -> np.ndarray:
        """True for each SP above level 1 that holds leaves itself (huge ones): few, if any."""
        out = np.zeros(self.n_sps + 1, dtype=bool)
        for k in np.flatnonzero(self.seg_level > 1).tolist():
            level = int(self.seg_level[k])
            base = int(self.seg_sp_off[k, level])
            first = base + (int(self.seg_gfn_lo[k]) >> (9 * level))
            last = base + ((int(self.seg_gfn_hi[k]) - 1) >> (9 * level))
            out[first : last + 1] = True
        return out

    def held_keys(self, sp: int) -> np.ndarray:
        """The leaf keys an SP holds itself: those under it whose leaf level is its level."""
        level = int(self.sp_level[sp])
        lo, hi = int(self.sp_key_lo[sp]), int(self.sp_key_hi[sp])
        a = np.maximum(self.seg_key_base, lo)
        b = np.minimum(self._seg_key_end, hi)
        mine = (self.seg_vm == self.sp_vm[sp]) & (self.seg_level == level)
        return concat_ranges(a[mine], b[mine])

    def _fill_key_tables(self, sp_arr: np.ndarray, meta: TraceMeta) -> None:
        # Keys under an SP: the keys whose first gfn lies in the SP's gfn span.
        for i in range(len(meta.vms)):
            lo, hi = int(self.vm_sp_lo[i]), int(self.vm_sp_hi[i])
            levels = sp_arr[lo:hi, 1]
            region = sp_arr[lo:hi, 2]
            g0 = region << (9 * levels)
            g1 = (region + 1) << (9 * levels)
            self.sp_key_lo[lo:hi] = self.key_lower_bound(i, g0)
            self.sp_key_hi[lo:hi] = self.key_lower_bound(i, g1)
            self.sp_key_lo[self.root_sp[i]] = self.vm_key_lo[i]
            self.sp_key_hi[self.root_sp[i]] = self.vm_key_hi[i]

    def _segment_lists(self) -> tuple[list[int], list[tuple[int, int, int, int, int]]]:
        if not hasattr(self, "_seg_lists"):
            starts = [int(x) for x in self.seg_start]
            rows = [
                (int(v), int(lo), int(e) & ((1 << VM_SHIFT) - 1), int(lv), int(b))
                for v, lo, e, lv, b in zip(
                    self.seg_vm,
                    self.seg_gfn_lo,
                    self.seg_end,
                    self.seg_level,
                    self.seg_key_base,
                    strict=True,
                )
            ]
            self._seg_lists = (starts, rows)
        return self._seg_lists

    def key_lower_bound_one(self, vm_index: int, gfn: int) -> int:
        """Scalar :meth:`key_lower_bound`, for host events (no numpy call overhead)."""
        starts, rows = self._segment_lists()
        vm_lo, vm_hi = int(self.vm_key_lo[vm_index]), int(self.vm_key_hi[vm_index])
        gfn = min(gfn, (1 << VM_SHIFT) - 1)
        i = bisect.bisect_right(starts, (vm_index << VM_SHIFT) | gfn) - 1
        if i < 0 or rows[i][0] != vm_index:
            return vm_lo
        _, lo, hi, level, base = rows[i]
        shift = 9 * (level - 1)
        key = base + ((hi - lo) >> shift if gfn >= hi else (gfn - lo + (1 << shift) - 1) >> shift)
        return min(max(key, vm_lo), vm_hi)

    def key_floor(self, vm_index: int, gfn: int) -> int:
        """The key whose leaf covers ``gfn``, else the first key after it."""
        starts, rows = self._segment_lists()
        i = bisect.bisect_right(starts, (vm_index << VM_SHIFT) | min(gfn, (1 << VM_SHIFT) - 1)) - 1
        if i >= 0 and rows[i][0] == vm_index and gfn < rows[i][2]:
            _, lo, _, level, base = rows[i]
            return base + ((gfn - lo) >> (9 * (level - 1)))
        return self.key_lower_bound_one(vm_index, gfn)

    def key_lower_bound(self, vm_index: int, gfn: np.ndarray) -> np.ndarray:
        """Id of the first leaf key of the VM whose first gfn is >= ``gfn``."""
        gfn = np.minimum(np.asarray(gfn, dtype=np.int64), (1 << VM_SHIFT) - 1)
        packed = (np.uint64(vm_index) << np.uint64(VM_SHIFT)) | gfn.astype(np.uint64)
        seg = np.searchsorted(self.seg_start, packed, side="right") - 1
        seg_c = np.maximum(seg, 0)
        same_vm = (seg >= 0) & (self.seg_vm[seg_c] == vm_index)
        lo = self.seg_gfn_lo[seg_c].astype(np.int64)
        hi = self.seg_gfn_hi[seg_c]
        shift = 9 * (self.seg_level[seg_c] - 1)
        base = self.seg_key_base[seg_c]
        inside = base + ((gfn - lo + (1 << shift) - 1) >> shift)
        after = base + ((hi - lo) >> shift)
        vm_lo, vm_hi = int(self.vm_key_lo[vm_index]), int(self.vm_key_hi[vm_index])
        out = np.where(same_vm, np.where(gfn < hi, inside, after), vm_lo)
        return np.clip(out, vm_lo, vm_hi)


def _vm_tables(meta: TraceMeta) -> tuple[np.ndarray, np.ndarray, int]:
    """The VM table's lookups: VM id -> index, first global vCPU per VM, number of vCPUs.

    The id table has 65536 entries (every uint16 id), -1 for unknown ids.
    """
    vm_index = np.full(0x10000, -1, dtype=np.int64)
    vcpu_base = np.zeros(len(meta.vms), dtype=np.int64)
    total_vcpus = 0
    for i, vm in enumerate(meta.vms):
        vm_index[vm.id] = i
        vcpu_base[i] = total_vcpus
        total_vcpus += vm.vcpus
    return vm_index, vcpu_base, total_vcpus


@dataclass
class _Segments:
    """Every VM's leaf segments in (VM, gfn) order, with their leaf keys numbered."""

    rows: list[tuple[int, int, int, int, int, bool]]
    """(VM index, first gfn, end gfn, leaf level, first key, dirty_log) per segment."""
    vm_key_lo: list[int]
    vm_key_hi: list[int]
    key_count: int

    @classmethod
    def number(cls, meta: TraceMeta) -> _Segments:
        """Split every slot into segments (rule 3b) and number their keys.

        Each segment starts in a fresh block of 512 keys, a 4 KiB segment at its first gfn's
        offset in its 2 MiB region, so that 4 KiB keys are congruent to their gfns modulo 512.
        """
        rows: list[tuple[int, int, int, int, int, bool]] = []
        vm_key_lo: list[int] = []
        vm_key_hi: list[int] = []
        key_count = 0
        for i, vm in enumerate(meta.vms):
            key_count = -(-key_count // 512) * 512
            vm_key_lo.append(key_count)
            for slot in sorted(vm.memslots, key=lambda s: s.gpa_start):
                top = 1 if slot.dirty_log else BACKING_LEVEL[slot.backing]
                lo, hi = slot.gfn_start, slot.gfn_start + slot.npages
                for a, b, level in _leaf_segments(lo, hi, top):
                    key_count = -(-key_count // 512) * 512 + (a % 512 if level == 1 else 0)
                    rows.append((i, a, b, level, key_count, slot.dirty_log))
                    key_count += (b - a) >> (9 * (level - 1))
            vm_key_hi.append(key_count)
        return cls(rows, vm_key_lo, vm_key_hi, key_count)

    @cached_property
    def _columns(self) -> np.ndarray:
        return np.array([r[:5] for r in self.rows], dtype=np.int64).reshape(-1, 5)

    @property
    def vm(self) -> np.ndarray:
        """VM index of each segment."""
        return self._columns[:, 0]

    @property
    def gfn_lo(self) -> np.ndarray:
        """First gfn of each segment."""
        return self._columns[:, 1]

    @property
    def gfn_hi(self) -> np.ndarray:
        """One past the last gfn of each segment."""
        return self._columns[:, 2]

    @property
    def level(self) -> np.ndarray:
        """Leaf level of each segment."""
        return self._columns[:, 3]

    @property
    def key_base(self) -> np.ndarray:
        """First leaf key of each segment."""
        return self._columns[:, 4]

    @property
    def dirty(self) -> np.ndarray:
        """Dirty logging of each segment's slot."""
        return np.array([r[5] for r in self.rows], dtype=bool)


@dataclass
class _SpRegions:
    """Every VM's SP ids, numbered top-down: the root, then each level's regions."""

    rows: np.ndarray
    """(VM index, level, region) per SP id."""
    ranges: dict[tuple[int, int], list[tuple[int, int, int]]]
    """(VM index, level) -> runs of regions (first, last, SP id of the first)."""
    root_sp: list[int]
    vm_sp_lo: list[int]
    vm_sp_hi: list[int]

    @property
    def n_sps(self) -> int:
        """The number of SP ids."""
        return len(self.rows)

    @classmethod
    def number(cls, meta: TraceMeta) -> _SpRegions:
        """Number the SPs that can exist: below the root, the union of the slots' regions."""
        blocks: list[np.ndarray] = []  # blocks of (vm, level, region) rows, roots first per VM
        n_sps = 0
        ranges: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        root_sp, vm_sp_lo, vm_sp_hi = [], [], []
        for i, vm in enumerate(meta.vms):
            vm_sp_lo.append(n_sps)
            root_sp.append(n_sps)
            blocks.append(np.array([[i, vm.root_level, 0]], dtype=np.int64))
            n_sps += 1
            for level in range(vm.root_level - 1, 0, -1):
                ranges[(i, level)] = []
                for a, b in _merged_regions(vm.memslots, level):
                    ranges[(i, level)].append((a, b, n_sps))
                    block = np.empty((b - a + 1, 3), dtype=np.int64)
                    block[:, 0], block[:, 1] = i, level
                    block[:, 2] = np.arange(a, b + 1)
                    blocks.append(block)
                    n_sps += b - a + 1
            vm_sp_hi.append(n_sps)
        rows = np.concatenate(blocks) if blocks else np.zeros((0, 3), dtype=np.int64)
        return cls(rows, ranges, root_sp, vm_sp_lo, vm_sp_hi)

    def segment_offsets(self, meta: TraceMeta, segs: _Segments) -> np.ndarray:
        """[segment, level] -> SP id minus region, for the levels below its VM's root."""
        out = np.zeros((len(segs.rows), MAX_LEVEL), dtype=np.int64)
        for k, (vi, lo, _hi, _lv, _b, _d) in enumerate(segs.rows):
            for level in range(1, meta.vms[vi].root_level):
                region = lo >> (9 * level)
                for a, b, base in self.ranges[(vi, level)]:
                    if a <= region <= b:
                        out[k, level] = base - a
                        break
        return out

    def parents(self, meta: TraceMeta) -> np.ndarray:
        """Parent of each SP: the region one level up, or the root (n_sps for roots)."""
        n_sps = self.n_sps
        parent = np.full(n_sps, n_sps, dtype=np.int64)
        for vi, vm in enumerate(meta.vms):
            for level in range(1, vm.root_level):
                for a, b, base in self.ranges[(vi, level)]:
                    ids = np.arange(base, base + b - a + 1)
                    if level + 1 == vm.root_level:
                        parent[ids] = self.root_sp[vi]
                        continue
                    regions = np.arange(a, b + 1) >> 9
                    for pa, pb, pbase in self.ranges[(vi, level + 1)]:
                        inside = (regions >= pa) & (regions <= pb)
                        parent[ids[inside]] = pbase + regions[inside] - pa
        return parent

    def level_blocks(self) -> list[list[tuple[int, int]]]:
        """Per VM, the SP id ranges of each level, root first."""
        out = []
        for lo, hi in zip(self.vm_sp_lo, self.vm_sp_hi, strict=True):
            levels = self.rows[lo:hi, 1]
            cuts = [lo, *(lo + np.flatnonzero(levels[1:] != levels[:-1]) + 1).tolist(), hi]
            out.append(list(pairwise(cuts)))
        return out


def _merged_regions(memslots: tuple[Memslot, ...], level: int) -> list[list[int]]:
    """The level's regions the slots touch, as merged runs [first, last]."""
    spans = sorted(
        (s.gfn_start >> (9 * level), (s.gfn_start + s.npages - 1) >> (9 * level)) for s in memslots
    )
    merged: list[list[int]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return merged
