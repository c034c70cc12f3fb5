"""Rule 9's core arithmetic, on the worked examples of replay/mmu/MODEL.md appendix A.2."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from replay.mmu.config import MmuConfig
from replay.mmu.shrinker import shrink_slab_pass

CFG = MmuConfig()


def test_priority_12_with_23614_pages_scans_nothing() -> None:
    """delta = ((23614 >> 12) * 4) // 20 = 20 // 20 = 1: total 1 < 128, no scan; deferred 1."""
    p = shrink_slab_pass(23_614, 0, 12, CFG)
    assert (p.scans, p.nr_deferred) == ((), 1)


def test_priority_5_with_96_deferred_scans_once() -> None:
    """delta = (737 * 4) // 20 = 147; total = (96 >> 5) + 147 = 150: one scan of 128, 22 left;
    deferred = 96 + 147 - 128 = 115."""
    p = shrink_slab_pass(23_614, 96, 5, CFG)
    assert (p.scans, p.nr_deferred) == ((128,), 115)


def test_drop_caches_priority_0_makes_36_scans() -> None:
    """delta = 23614 * 4 // 20 = 4722 = 36 * 128 + 114: 36 calls of 128, 114 deferred."""
    p = shrink_slab_pass(23_614, 0, 0, CFG)
    assert (len(p.scans), set(p.scans), p.nr_deferred) == (36, {128}, 114)


def test_cache_policy_example_needs_five_drop_caches_passes() -> None:
    """4 vCPUs x 38 pages = 152 at priority 0: delta 30 each pass; deferred 30, 60, 90, 120;
    the fifth pass totals 150 >= 128: one scan of 128."""
    deferred = 0
    seen = []
    for _ in range(5):
        p = shrink_slab_pass(152, deferred, 0, CFG)
        seen.append(p.scans)
        deferred = p.nr_deferred
    assert seen == [(), (), (), (), (128,)]
    assert deferred == 120 + 30 - 128


def test_nothing_to_free_leaves_deferred_alone() -> None:
    assert shrink_slab_pass(0, 77, 0, CFG).nr_deferred == 77


def test_small_counts_scan_when_total_reaches_freeable() -> None:
    """freeable 10 at priority 0 with 40 deferred: total = min(40 + 2, 20) = 20 >= 10: one scan
    of 20 (the loop's second condition), deferred clamp(40 + 2 - 20, 0, 20) = 20."""
    p = shrink_slab_pass(10, 40, 0, CFG)
    assert (p.scans, p.nr_deferred) == ((20,), 20)


@given(st.integers(1, 10**6), st.integers(0, 10**6), st.integers(0, 12))
def test_invariants(freeable: int, deferred: int, priority: int) -> None:
    p = shrink_slab_pass(freeable, deferred, priority, CFG)
    assert all(0 < n <= CFG.shrink_batch for n in p.scans)
    assert sum(p.scans) <= 2 * freeable
    assert 0 <= p.nr_deferred <= 2 * freeable
