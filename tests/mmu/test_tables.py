"""The vectorized engine's lookup tables against the reference engine's plain lookups.

``LookupTables.locate`` places an access (rules 1 and 3b) through a 2 MiB-block table, or by
binary search for guests too large to tabulate; ``LookupTables.paths`` lists the SPs of its path
(rule 3d). Both are checked here gfn by gfn against ``replay.mmu.reference.Vm``, on memslots
with every kind of edge: unaligned starts and ends, huge backings cut short, dirty logging,
gaps, and a VM with a 5-level root.
"""

from __future__ import annotations

import numpy as np
import pytest

from replay.mmu import tables
from replay.mmu.config import MmuConfig
from replay.mmu.layout import Layout
from replay.mmu.reference import Vm
from replay.mmu.tables import LookupTables
from replay.trace.schema import Memslot, TraceMeta
from tests.mmu.helpers import GiB, MiB, meta, vm

PAGE = 4096
EDGY = meta(
    vm(
        3,
        slots=(
            Memslot(5 * PAGE, 4 * MiB, "2m"),  # 4 KiB head, one 2 MiB leaf, 4 KiB tail
            Memslot(GiB - 2 * MiB, GiB + 4 * MiB + PAGE, "1g"),  # one 1 GiB leaf in the middle
            Memslot(3 * GiB, 2 * MiB, "2m", dirty_log=True),  # 4 KiB leaves only
        ),
    ),
    vm(7, mode="tdp_mmu", root=5, slots=(Memslot(0, 6 * MiB + 3 * PAGE),)),
)


def _gfns(tmeta: TraceMeta) -> list[tuple[int, int]]:
    """(VM id, gfn) pairs: every slot's edges and their neighbours, and a sample inside."""
    out: list[tuple[int, int]] = []
    for spec in tmeta.vms:
        for s in spec.memslots:
            lo, hi = s.gfn_start, s.gfn_start + s.npages
            edges = [lo, hi, lo + 511, lo + 512, hi - 512, hi - 513, (lo + hi) // 2]
            for g in edges:
                out.extend((spec.id, g + d) for d in (-1, 0, 1) if g + d >= 0)
            out.extend((spec.id, g) for g in range(lo, hi, max(1, (hi - lo) // 300)))
        out.append((spec.id, 1 << 41))  # far past every slot, beyond the packable gfns
    return out


def _located(tmeta: TraceMeta) -> tuple[Layout, list[tuple[int, int]], tuple[np.ndarray, ...]]:
    lay = Layout.build(tmeta, [64] * len(tmeta.vms))
    lookup = LookupTables.build(lay, MmuConfig())
    pairs = _gfns(tmeta)
    vms = np.array([v for v, _ in pairs], dtype=np.uint16)
    gpas = np.array([g << 12 for _, g in pairs], dtype=np.uint64)
    gfn, seg, inside, key = lookup.locate(vms, gpas)
    vi = lay.vm_index[vms]
    paths = lookup.paths(vi, gfn, seg)
    return lay, pairs, (gfn, seg, inside, key, paths)


@pytest.mark.parametrize("tabulated", [True, False])
def test_locate_and_paths_agree_with_the_reference(tabulated: bool) -> None:
    """Inside a slot exactly where the reference finds one (rule 1); the segment's level is
    the reference's goal level (rule 3b); one leaf key per (level, leaf index), distinct across
    leaves; the path holds the reference's SPs, root first, the sentinel where unused."""
    with pytest.MonkeyPatch.context() as mp:
        if not tabulated:
            mp.setattr(tables, "BLOCK_TABLE_MAX", 0)
        lay, pairs, (gfn, seg, inside, key, paths) = _located(EDGY)
    ref = {spec.id: Vm(spec, [], 64) for spec in EDGY.vms}
    leaf_of_key: dict[int, tuple[int, int, int]] = {}
    for i, (vm_id, g) in enumerate(pairs):
        v = ref[vm_id]
        slot = v.slot_of(g)
        assert int(gfn[i]) == g
        assert bool(inside[i]) == (slot is not None), (vm_id, g)
        if slot is None:
            continue
        goal = v.goal_level(slot, g)
        assert int(lay.seg_level[seg[i]]) == goal, (vm_id, g)
        leaf = (vm_id, goal, g >> (9 * (goal - 1)))
        assert leaf_of_key.setdefault(int(key[i]), leaf) == leaf, (vm_id, g)
        expected = [lay.root_sp[lay.vm_index[vm_id]]]
        rows = len(paths)
        for d in range(1, rows):
            level = rows - d
            if level < v.root_level and level >= goal:
                sp = paths[d, i]
                assert (lay.sp_level[sp], lay.sp_vm[sp]) == (level, lay.vm_index[vm_id])
                expected.append(sp)
            else:
                assert paths[d, i] == lay.n_sps  # the sentinel
        assert [int(p) for p in paths[:, i] if p != lay.n_sps] == expected
        # The SP holding the leaf is the last on the path, and its keys cover the leaf's key.
        holder = expected[-1]
        assert lay.sp_key_lo[holder] <= key[i] < lay.sp_key_hi[holder]
        assert lay.holder(seg[i : i + 1], gfn[i : i + 1])[0] == holder
    assert len(leaf_of_key) > 100


def test_both_placements_agree_and_the_fast_table_is_built_only_when_small() -> None:
    """The block table and the binary search give the same columns; without the block table
    (BLOCK_TABLE_MAX 0) there is no fast table either."""
    _, _, tabulated = _located(EDGY)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tables, "BLOCK_TABLE_MAX", 0)
        _, _, searched = _located(EDGY)
        lay = Layout.build(EDGY, [64, 64])
        lookup = LookupTables.build(lay, MmuConfig())
        assert lookup.blocks is None
        assert lookup.fast is None
    for a, b in zip(tabulated, searched, strict=True):
        assert np.array_equal(a, b)
    assert LookupTables.build(lay, MmuConfig()).fast is not None


def test_group_tables_mark_groups_inside_their_segment() -> None:
    """pte_prefetch 8 (rule 3e). VM 3's first slot, gfns 5 to 1029: a 4 KiB head 5..512 whose
    whole groups run from gfn 8 to 512, a 2 MiB leaf (no group), a 4 KiB tail 1024..1029 with
    no whole group (lo 1024 = hi 1024). The dirty-logged slot looks at its groups but fills
    none whole; huge leaves and tdp_mmu VMs have no groups."""
    lay = Layout.build(EDGY, [64, 64])
    groups = LookupTables.build(lay, MmuConfig()).groups
    head, tail = 0, 2
    assert (int(lay.seg_gfn_lo[head]), int(lay.seg_gfn_hi[head])) == (5, 512)
    assert (int(groups.lo[head]), int(groups.hi[head])) == (8, 512)
    assert (int(lay.seg_gfn_lo[tail]), int(lay.seg_gfn_hi[tail])) == (1024, 1029)
    assert (int(groups.lo[tail]), int(groups.hi[tail])) == (1024, 1024)
    assert groups.prefetching[[head, tail]].all()
    assert groups.filled[[head, tail]].all()
    dirty = np.flatnonzero(lay.seg_dirty)
    assert len(dirty) == 1
    assert groups.prefetching[dirty].all()
    assert not groups.filled[dirty].any()
    huge = np.flatnonzero(lay.seg_level > 1)
    assert not groups.prefetching[huge].any()
    tdp = np.flatnonzero(lay.seg_vm == 1)
    assert not groups.prefetching[tdp].any()
