from __future__ import annotations

import numpy as np

from replay.mmu.layout import Layout, _leaf_segments
from replay.trace.schema import Memslot
from tests.mmu.helpers import GiB, MiB, meta, vm


def test_a_slot_splits_into_runs_of_one_leaf_level() -> None:
    """A 1g-backed slot from 1 MiB to 2 GiB + 4 KiB: 4 KiB pages up to 2 MiB, 2 MiB leaves up to
    1 GiB, one 1 GiB leaf, then a last 4 KiB page (the rule 3b edges)."""
    lo, hi = MiB >> 12, (2 * GiB + 4096) >> 12
    assert _leaf_segments(lo, hi, 3) == [
        (256, 512, 1),
        (512, 1 << 18, 2),
        (1 << 18, 1 << 19, 3),
        (1 << 19, (1 << 19) + 1, 1),
    ]


def test_keys_are_ordered_and_aligned_and_sps_dense() -> None:
    m = meta(vm(0, slots=(Memslot(0, 4 * MiB, "2m"), Memslot(GiB, 8192))), vm(1, root=5))
    lay = Layout.build(m, [64, 64])
    # VM 0: two 2 MiB keys (0, 1); its two 4 KiB keys start a fresh block of 512 at their gfns'
    # offset in their 2 MiB region (gfn 262144 % 512 = 0): keys 512, 513. VM 1 starts at the
    # next block, 1024, with 1 GiB of 4 KiB keys; the key count rounds up to whole blocks.
    assert (lay.vm_key_lo.tolist(), lay.vm_key_hi.tolist()) == (
        [0, 1024],
        [514, 1024 + (1 << 18)],
    )
    assert lay.seg_key_base.tolist() == [0, 512, 1024]
    assert lay.n_keys == 1024 + (1 << 18)
    # Every leaf key is held by an SP of its VM, at its own level; 4 KiB keys are congruent to
    # their gfns modulo 512.
    for k in range(len(lay.seg_level)):
        lo = int(lay.seg_gfn_lo[k])
        hi = int(lay.seg_end[k]) & ((1 << 40) - 1)
        level = int(lay.seg_level[k])
        keys = lay.seg_key_base[k] + np.arange((hi - lo) >> (9 * (level - 1)))
        held_by = lay.key_holder[keys]
        assert set(lay.sp_vm[held_by].tolist()) == {int(lay.seg_vm[k])}
        assert set(lay.sp_level[held_by].tolist()) == {level}
        if level == 1:
            assert np.array_equal(keys % 512, np.arange(lo, hi) % 512)
    # VM 1 (root level 5): root, then one SP each at levels 4 and 3, one PD, 512 PTs.
    lo, hi = lay.vm_sp_lo[1], lay.vm_sp_hi[1]
    assert np.bincount(lay.sp_level[lo:hi]).tolist() == [0, 512, 1, 1, 1, 1]
    # The keys under VM 1's PD are all of its keys.
    pd = lo + np.flatnonzero(lay.sp_level[lo:hi] == 2)[0]
    assert (lay.sp_key_lo[pd], lay.sp_key_hi[pd]) == (lay.vm_key_lo[1], lay.vm_key_hi[1])


def test_key_lower_bound_scalar_and_vector_agree() -> None:
    m = meta(vm(0, slots=(Memslot(0, 4 * MiB, "2m"), Memslot(GiB, 8192))))
    lay = Layout.build(m, [64])
    gfns = [0, 1, 511, 512, 1023, 1024, 5000, GiB >> 12, (GiB >> 12) + 1, (GiB >> 12) + 2, 10**9]
    vec = lay.key_lower_bound(0, np.array(gfns)).tolist()
    assert vec == [lay.key_lower_bound_one(0, g) for g in gfns]
    # Keys 0, 1: the 2 MiB leaves; 512, 513: the 4 KiB pages at 1 GiB (a fresh block of keys);
    # a gfn in the gap between the slots gets the first key past the 2 MiB segment, 2 (a
    # padding key, which holds nothing, so as a range bound it is the same as 512).
    assert vec == [0, 1, 1, 1, 2, 2, 2, 512, 513, 514, 514]
    assert lay.key_floor(0, 511) == 0


def test_the_sps_holding_huge_leaves_are_those_with_keys_of_their_own() -> None:
    """VM 0: a 2m-backed slot of 4 MiB + 4 KiB at 0 (two 2 MiB leaves, held by the PD, then a 4
    KiB page in a PT) and a 1g-backed slot from 1 GiB to 3 GiB (two 1 GiB leaves, held by the
    PDPT); VM 1: 4 KiB pages only. The PD and the PDPT hold huge leaves; no PT is counted, nor
    any table of VM 1."""
    m = meta(
        vm(0, slots=(Memslot(0, 4 * MiB + 4096, "2m"), Memslot(GiB, 2 * GiB, "1g"))),
        vm(1, slots=(Memslot(0, 8 * MiB),)),
    )
    lay = Layout.build(m, [64, 64])
    expected = [
        sp
        for sp in range(lay.n_sps)
        if lay.sp_level[sp] > 1 and sp != lay.root_sp[lay.sp_vm[sp]] and len(lay.held_keys(sp))
    ]
    assert np.flatnonzero(lay.holds_huge).tolist() == expected
    assert lay.sp_level[expected].tolist() == [3, 2]
    assert set(lay.sp_vm[expected].tolist()) == {0}
