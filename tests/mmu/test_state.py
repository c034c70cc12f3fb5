"""The vectorized engine's state arrays: the packed copy of the leaves stays exact, and the
oldest-first choice of SPs to zap follows creation order (rules 11, 13)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.mmu.layout import Layout
from replay.mmu.state import GATHER_FLAGS, Leaves, Sps
from replay.trace.schema import Memslot
from tests.mmu.helpers import MiB, meta, vm


def test_eight_flags_pack_into_a_byte_by_one_multiply() -> None:
    """Every pattern of eight 0/1 bytes, as Leaves.mirror packs them, equals packbits."""
    flags = ((np.arange(256)[:, None] >> np.arange(8)) & 1).astype(np.uint8)
    words = flags.copy().view(np.uint64).ravel()
    words *= GATHER_FLAGS
    words >>= np.uint64(56)
    expected = np.packbits(flags, axis=1, bitorder="little").ravel()
    assert words.astype(np.uint8).tolist() == expected.tolist() == list(range(256))


@settings(max_examples=40)
@given(
    st.lists(st.integers(0, 2047), max_size=60),
    st.lists(st.lists(st.integers(0, 2047), max_size=20), max_size=4),
    st.sampled_from([1, 2, 4, 8, 16]),
)
def test_installs_keep_the_packed_copy_exact(
    before: list[int], installs: list[list[int]], group: int
) -> None:
    """Leaves present before packing, then installs of single keys and of whole groups (rule
    3e): after each, the packed copy equals a fresh pack of ``present``."""
    leaves = Leaves(2048)
    leaves.present[before] = True
    leaves.pack()
    for keys in installs:
        single = np.array(sorted(set(keys)), dtype=np.int64)
        leaves.install(single)
        starts = np.unique(single & ~(group - 1))
        leaves.install_groups(starts, group)
        assert leaves.bits is not None
        assert np.array_equal(leaves.bits, np.packbits(leaves.present, bitorder="little"))
        assert leaves.present[single].all()
        assert leaves.present[(starts[:, None] + np.arange(group)).ravel()].all()
    leaves.unpack()
    assert leaves.bits is None


def test_oldest_follows_creation_order_and_skips_the_root() -> None:
    """A VM of 8 MiB: root, PDPT, PD and 4 PTs. Allocated in the order PT 3, root, PD, PT 0,
    PDPT (creation order, rule 11; relinking does not renew it), the 2 oldest but the root are
    PT 3 and the PD; asking for 0 still gives one (the kernel checks its count after zapping);
    asking for more than live gives every live SP but the root."""
    lay = Layout.build(meta(vm(slots=(Memslot(0, 8 * MiB),))), [64])
    sps = Sps(lay)
    root = int(lay.root_sp[0])
    pdpt, pd = (int(np.flatnonzero(lay.sp_level == level)[0]) for level in (3, 2))
    pts = np.flatnonzero(lay.sp_level == 1)
    assert len(pts) == 4
    order = [int(pts[3]), root, pd, int(pts[0]), pdpt]
    for sp in order:
        sps.allocate(np.array([sp]))
    sps.relink(np.array([int(pts[3])]))
    assert sps.live.tolist() == [5]
    assert sorted(sps.oldest(0, 2).tolist()) == sorted([int(pts[3]), pd])
    assert sps.oldest(0, 0).tolist() == [int(pts[3])]
    assert sorted(sps.oldest(0, 99).tolist()) == sorted(order[:1] + order[2:])
