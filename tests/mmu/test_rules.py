"""One focused test (or more) per numbered rule of replay/mmu/MODEL.md, numbers worked out by hand.

Every test replays with both engines (tests/mmu/helpers.both), which must agree row for row.
Default costs: fault_base 2000, sp_alloc 300, refill 250 (2500 under pressure), flush 10000.
MODEL.md's table "Where each rule lives" names the tests of each rule; tests/mmu/test_model_doc.py
checks that every rule has one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from replay.mmu.config import Attribution, Cause, CostModel, MmuConfig, Refill
from replay.mmu.results import ScanRow
from replay.trace.schema import Memslot
from tests.builders import write_rows
from tests.mmu.helpers import A, D, GiB, MiB, R, Row, S, U, Z, both, fault_rows, meta, vm

if TYPE_CHECKING:
    from pathlib import Path

TDP = meta(vm(mode="tdp_mmu"))


def test_rule_1_and_22_mmio_faults_touch_nothing() -> None:
    """gfn 0x40000 (1 GiB) lies past the only slot: cause mmio, leaf 0, cost fault_base_ns,
    no cache touched (the next real fault is the vCPU's first refill, natural, 40 pages)."""
    rows = fault_rows(both([A(0, 0x40000), A(10, 0)], TDP))
    assert rows[0]["cause"] == Cause.MMIO
    assert (rows[0]["leaf_level"], rows[0]["est_ns"], rows[0]["refill"]) == (0, 2000, Refill.NONE)
    assert rows[0]["attribution"] == Attribution.NONE
    assert (rows[1]["refill"], rows[1]["pages_refilled"]) == (Refill.NATURAL, 40)


@pytest.mark.parametrize("mode", ["tdp_mmu", "shadow_direct"])
def test_rule_1_extreme_gpas_are_mmio_in_both_engines(mode: str) -> None:
    """gpas at the edges of the column (2**52-1, 2**52, 2**63, 2**64-1) lie outside every slot:
    each access is an mmio fault, every time (nothing is installed), in both engines; gpa 0 is
    an ordinary fault, then a hit, whatever came between. (issue 12 item 7: the fast hit test
    shifted the int64 view of gpa 2**63 into a negative table row.)"""
    extremes = [0, (1 << 52) - 1, 1 << 52, 1 << 63, (1 << 64) - 4096, (1 << 64) - 1]
    accesses = [{**A(10 * i, 0), "gpa": gpa} for i, gpa in enumerate(extremes + extremes)]
    rows = fault_rows(both(accesses, meta(vm(mode=mode))))
    assert [r["row"] for r in rows] == [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11]
    assert [r["cause"] == Cause.MMIO for r in rows] == [False] + [True] * 10
    assert all((r["leaf_level"], r["new_sps"]) == (0, 0) for r in rows[1:])


def test_rule_2_a_present_linked_leaf_hits() -> None:
    """The second access to gfn 0 hits: one fault row only."""
    assert len(fault_rows(both([A(0, 0), A(1, 0)], TDP))) == 1


def test_rule_3_first_fault_allocates_root_and_path() -> None:
    """4-level root, 4 KiB leaf: root + PDPT + PD + PT = 4 new SPs (rule 27: the root counts);
    topup 40 pages; est = 2000 + 4*300 + 40*250 = 13200. gfn 512 (next PT): 1 new SP, 2300."""
    rows = fault_rows(both([A(0, 0), A(100_000, 512)], TDP))
    assert [(r["new_sps"], r["pages_refilled"], r["est_ns"]) for r in rows] == [
        (4, 40, 13200),
        (1, 0, 2300),
    ]
    assert rows[0]["cause"] == Cause.COLD
    assert rows[0]["leaf_level"] == 1


def test_rule_3a_refill_when_below_minimum() -> None:
    """Faults on gfn k*512 each need a new PT. After the first, shadow_page holds 36; fault k
    (k >= 1) finds 36 - (k - 1); below 5 first at k = 33 (4 left): it refills 36 pages."""
    rows = fault_rows(both([A(k * 1000, k * 512) for k in range(40)], TDP))
    refills = [(i, r["pages_refilled"]) for i, r in enumerate(rows) if r["pages_refilled"]]
    assert refills == [(0, 40), (33, 36)]
    assert rows[33]["refill"] == Refill.NATURAL


def test_rule_3a_shadow_direct_fills_pte_list_desc_once() -> None:
    """shadow_direct adds pte_list_desc (min 14): filled at the first fault, never consumed."""
    rows = fault_rows(both([A(0, 0), A(1000, 8)]))
    assert [r["refill"] for r in rows] == [Refill.NATURAL, Refill.NONE]


def test_rule_3b_goal_level_from_backing_dirty_log_and_slot_edges() -> None:
    """1g slot: a 1 GiB leaf (root + PDPT = 2 SPs). 2m slot of 3 MiB at 1 GiB: its first 2 MiB
    block gets a 2 MiB leaf (the PDPT covers 512 GiB and exists: 1 new PD); the last MiB, whose
    block crosses the slot end, 4 KiB leaves (same PD: 1 new PT). A dirty-logging 2m slot at
    2 GiB: 4 KiB leaves (a new PD and PT)."""
    slots = (
        Memslot(0, GiB, "1g"),
        Memslot(GiB, 3 * MiB, "2m"),
        Memslot(2 * GiB, 2 * MiB, "2m", dirty_log=True),
    )
    m = meta(vm(mode="tdp_mmu", slots=slots))
    g1, g2, g3 = GiB >> 12, (GiB + 2 * MiB + 4096) >> 12, (2 * GiB) >> 12
    rows = fault_rows(both([A(0, 5), A(1, g1), A(2, g2), A(3, g3)], m))
    assert [r["leaf_level"] for r in rows] == [3, 2, 1, 1]
    assert [r["new_sps"] for r in rows] == [2, 1, 1, 2]


def test_rule_3b_1g_backing_needs_whole_aligned_block() -> None:
    """A 1g-backed slot of 1.5 GiB at 1 GiB: its first GiB is one 1 GiB leaf; its last half
    falls back to 2 MiB leaves."""
    m = meta(vm(mode="tdp_mmu", slots=(Memslot(GiB, GiB + GiB // 2, "1g"),)))
    rows = fault_rows(both([A(0, GiB >> 12), A(1, (2 * GiB) >> 12)], m))
    assert [r["leaf_level"] for r in rows] == [3, 2]


def test_rule_3c_page_limit_acts_before_the_walk() -> None:
    """n_max 7. gfn 0's fault leaves 4 live SPs and fills the group 0..7. gfn 8 (next group,
    same PT, path linked) finds 7 - 4 = 3 < 5 free: the page limit zaps every non-root SP (3,
    PT 0 among them) BEFORE the walk, so the walk allocates PDPT, PD and PT 0 again (3 new)
    and the leaf goes into the new PT: est 2000 + 3*300 + one flush 10000 = 12900. Had the
    limit acted after the walk, the fault would allocate nothing and its leaf would be gone;
    instead gfn 8 then hits, and gfn 0 (its PT zapped) faults recycled."""
    cfg = MmuConfig(n_max_min=7, n_max_divisor=1 << 40)
    rows = fault_rows(both([A(0, 0), A(1, 8), A(2, 8), A(3, 0)], cfg=cfg))
    assert [(r["gfn"], r["cause"], r["new_sps"], r["recycled_sps"], r["est_ns"]) for r in rows] == [
        (0, Cause.COLD, 4, 0, 13200),
        (8, Cause.COLD, 3, 3, 12900),
        (0, Cause.RECYCLED, 3, 3, 12900),
    ]


def test_rule_3e_prefetch_fills_the_8_group_in_shadow_direct() -> None:
    """shadow_direct, 4 KiB: the fault on gfn 3 maps gfns 0..7; gfn 5 then hits, gfn 8 faults.
    tdp_mmu does not prefetch: gfn 5 faults."""
    shadow = fault_rows(both([A(0, 3), A(1, 5), A(2, 8)]))
    assert [r["gfn"] for r in shadow] == [3, 8]
    tdp = fault_rows(both([A(0, 3), A(1, 5)], TDP))
    assert [r["gfn"] for r in tdp] == [3, 5]


def test_rule_3e_prefetch_stops_at_dirty_log_and_slot_edges() -> None:
    """Dirty logging: no prefetch. A slot ending at gfn 5: the fault on gfn 1 prefetches gfn 0
    (the run before it) but the run 2..7 ends past the slot: stop, so gfn 2 faults later."""
    dirty = meta(vm(slots=(Memslot(0, GiB, "4k", dirty_log=True),)))
    assert len(fault_rows(both([A(0, 3), A(1, 5)], dirty))) == 2
    edge = meta(vm(slots=(Memslot(0, 5 * 4096),)))
    rows = fault_rows(both([A(0, 1), A(1, 0), A(2, 2), A(3, 3)], edge))
    assert [r["gfn"] for r in rows] == [1, 2, 3]


def test_rule_3e_prefetch_runs_split_at_present_entries() -> None:
    """Slot ends at gfn 6. Fault gfn 4 first: run 0..3 prefetched, run 5..7 ends past the slot.
    Then gfn 5 faults: entries 0..4 present; its own run is empty; run 6..7 starts at gfn 6,
    outside every slot: stop. gfn 5 was installed; gfn 1 hits."""
    edge = meta(vm(slots=(Memslot(0, 6 * 4096),)))
    rows = fault_rows(both([A(0, 4), A(1, 1), A(2, 5), A(3, 5)], edge))
    assert [r["gfn"] for r in rows] == [4, 5]


def test_rule_3e_a_group_cut_off_faults_on_its_path_then_on_its_missing_leaf() -> None:
    """gfn 0's fault maps the group 0..7 (root, PDPT, PD, PT: 4 SPs); unmap takes gfn 1 alone;
    shrink(1) zaps the PDPT, so the PD is unlinked. In one epoch, gfn 0 (present, cut off)
    faults on its path: a new PDPT, the PD relinked, cause zapped. gfn 1, same group, same path
    (now linked), faults on its missing leaf alone: cause notifier, no SP. gfn 2 hits."""
    rows = fault_rows(both([A(0, 0), U(10, 4096, 4096), S(20, 1), A(30, 0), A(40, 1), A(50, 2)]))
    assert [(r["gfn"], r["cause"], r["new_sps"], r["relinked_sps"]) for r in rows] == [
        (0, Cause.COLD, 4, 0),
        (0, Cause.ZAPPED, 1, 1),
        (1, Cause.NOTIFIER, 0, 0),
    ]


def test_rule_5_cause_names_what_last_removed_the_translation() -> None:
    """shadow_direct, one trace, every cause but recycled (rule 13's test has that one):
    gfn 0 first: cold (root, PDPT, PD, PT: 4 SPs, 40 pages, 13200). unmap of gfn 0, then gfn
    0: notifier (its path is linked: no SP, 2000). shrink(1) zaps the PDPT, unlinking the PD;
    gfn 0 (present, cut off): zapped, a new PDPT and the PD relinked (2300). zap_all, then gfn
    0: invalidated, 4 new SPs from the 35 left (no refill: 2000 + 1200 = 3200). gfn 0x40000
    lies past the only slot: mmio, leaf level 0, 2000."""
    trace = [A(0, 0), U(10, 0, 4096), A(20, 0), S(30, 1), A(40, 0), Z(50), A(60, 0)]
    rows = fault_rows(both([*trace, A(70, 0x40000)]))
    assert [(r["cause"], r["new_sps"], r["relinked_sps"], r["est_ns"]) for r in rows] == [
        (Cause.COLD, 4, 0, 13200),
        (Cause.NOTIFIER, 0, 0, 2000),
        (Cause.ZAPPED, 1, 1, 2300),
        (Cause.INVALIDATED, 4, 0, 3200),
        (Cause.MMIO, 0, 0, 2000),
    ]
    assert rows[-1]["leaf_level"] == 0


def test_rule_6_refill_kind_and_pages_counted_apart() -> None:
    """TDP, policy cache, one vCPU. Fault 0 (gfn 0): both caches filled, natural, 40 pages;
    4 SPs leave 36 and 36. Fault 1 (gfn 512, a new PT): 35 and 35, no refill. A scan empties
    shadow_page (35 pages, flagged); page_header is never touched. Fault 2 (gfn 1024):
    shadow_page refills 40 after the shrinker: refill shrinker (the flag is cleared), 39 and 34
    left. Faults 3.. each need one new PT: page_header finds 34 - (k - 3) and first falls
    below 5 at fault 33 (4 left): a refill of slab objects only, natural, 0 pages. shadow_page
    finds 39 - (k - 3) and falls below 5 at fault 38: natural (the flag was cleared), 36 pages."""
    trace = [A(0, 0), A(1, 512), S(10**9, 1), A(2 * 10**9, 1024)]
    trace += [A(2 * 10**9 + j, (2 + j) * 512) for j in range(1, 37)]
    rows = fault_rows(both(trace, TDP, policy="cache"))
    refills = [(i, r["refill"], r["pages_refilled"]) for i, r in enumerate(rows) if r["refill"]]
    assert refills == [
        (0, Refill.NATURAL, 40),
        (2, Refill.SHRINKER, 40),
        (33, Refill.NATURAL, 0),
        (38, Refill.NATURAL, 36),
    ]


def test_rule_7_attribution_cause_first_then_refill() -> None:
    """Policy cache: gfn 0 unmapped, then a scan empties the vCPU's cache; gfn 0's refault has
    cause notifier (not zapped) and a refill after the shrinker: cache_eviction, though the
    fault itself would have happened anyway (est 2000 + 40*250 = 12000, no SP). Policy zap: a
    page-limit refault (cause recycled) is attributed to neither: the page limit is not the
    shrinker. Rule 3d's test has zapped -> zapped_page_tables."""
    cache = fault_rows(
        both([A(0, 0), U(10, 0, 4096), S(10**9, 128), A(2 * 10**9, 0)], TDP, policy="cache")
    )
    r = cache[1]
    assert (r["cause"], r["refill"], r["attribution"], r["est_ns"]) == (
        Cause.NOTIFIER,
        Refill.SHRINKER,
        Attribution.CACHE_EVICTION,
        12000,
    )
    cfg = MmuConfig(n_max_min=7, n_max_divisor=1 << 40)
    zap = fault_rows(both([A(0, 0), A(1, 512), A(2, 1024), A(3, 1)], cfg=cfg))
    assert (zap[3]["cause"], zap[3]["attribution"]) == (Cause.RECYCLED, Attribution.NONE)


def test_rule_8_every_column_of_a_fault_row() -> None:
    """Rule 3d's trace, whole rows: the first fault and the relinking refault after shrink(1)
    (a new PDPT, the PD relinked, no refill: 2000 + 300)."""
    rows = fault_rows(both([A(0, 0), S(1_000_000, 1), A(2_000_000, 3)]))
    assert rows == [
        {
            "row": 0,
            "t_ns": 0,
            "vm": 0,
            "vcpu": 0,
            "gfn": 0,
            "cause": Cause.COLD,
            "refill": Refill.NATURAL,
            "attribution": Attribution.NONE,
            "leaf_level": 1,
            "new_sps": 4,
            "relinked_sps": 0,
            "recycled_sps": 0,
            "pages_refilled": 40,
            "est_ns": 13200,
        },
        {
            "row": 2,
            "t_ns": 2_000_000,
            "vm": 0,
            "vcpu": 0,
            "gfn": 3,
            "cause": Cause.ZAPPED,
            "refill": Refill.NONE,
            "attribution": Attribution.ZAPPED_PAGE_TABLES,
            "leaf_level": 1,
            "new_sps": 1,
            "relinked_sps": 1,
            "recycled_sps": 0,
            "pages_refilled": 0,
            "est_ns": 2300,
        },
    ]


def test_rule_3d_and_11_zap_unlinks_children_and_refault_relinks() -> None:
    """shrink(1) zaps the oldest non-root SP, the PDPT: the PD is unlinked (cause zapped). gfn 3
    (prefetched, present but cut off) faults: a new PDPT (1 SP), the PD relinked; no leaf
    change; attribution zapped_page_tables; est 2000 + 300. gfn 6 then hits."""
    res = both([A(0, 0), S(1_000_000, 1), A(2_000_000, 3), A(3_000_000, 6)])
    rows = fault_rows(res)
    assert len(rows) == 2
    r = rows[1]
    assert (r["cause"], r["new_sps"], r["relinked_sps"], r["est_ns"]) == (Cause.ZAPPED, 1, 1, 2300)
    assert r["attribution"] == Attribution.ZAPPED_PAGE_TABLES
    assert res.scans == [ScanRow(1, 1_000_000, "shrink", None, None, 1, 1, (0,), (1,), 10000)]


def test_rule_11_zap_of_a_pt_drops_its_leaves() -> None:
    """shrink(3) zaps PDPT, PD and PT (the 3 oldest non-root): the PT's leaves go (cause
    zapped); the refault of gfn 2 allocates PDPT, PD and PT again (3 SPs)."""
    rows = fault_rows(both([A(0, 0), S(10, 3), A(20, 2)]))
    assert (rows[1]["cause"], rows[1]["new_sps"], rows[1]["relinked_sps"]) == (Cause.ZAPPED, 3, 0)


def test_rule_11_tdp_mmu_pages_are_never_counted() -> None:
    """A TDP MMU VM under drop_caches: count() is 0, so no scan, nothing freed, no zapped fault."""
    res = both([A(0, 0), R(10, "drop_caches", 0), A(20, 0)], TDP)
    assert res.scans == []
    assert len(fault_rows(res)) == 1


def test_rule_11_one_vm_per_call_rotated_to_the_tail() -> None:
    """vm_list [0, 1]. shrink(1) picks VM 0 (head) and zaps its PDPT, which held its 1 GiB leaf:
    VM 0 keeps only its root and goes to the tail: [1, 0]. shrink(128) picks VM 1 (3 non-root
    SPs) and rotates it: [0, 1]. The third picks VM 0 again: its root still counts, so it is
    chosen, frees nothing (no flush) and moves to the tail."""
    m = meta(vm(0, slots=(Memslot(0, GiB, "1g"),)), vm(1))
    res = both([A(0, 0, vm=0), A(1, 0, vm=1), S(10, 1), S(20, 128), S(30, 128)], m)
    assert [(s.vms, s.freed) for s in res.scans] == [((0,), 1), ((1,), 3), ((0,), 0)]
    assert [s.flush_ns for s in res.scans] == [10000, 10000, 0]


def test_rule_12_cache_scan_empties_idle_vcpus_vm_by_vm() -> None:
    """Two TDP VMs x 2 vCPUs; each vCPU 0 faults first (36 left), each vCPU 1 then (39 left).
    shrink(50) long after: VM 0 goes to the tail, vCPU 0 gives 36 (< 50), vCPU 1 39: 75 >= 50,
    stop. VM 0's vCPU 0 then faults: a refill after the shrinker: cache_eviction, 40 pages."""
    m = meta(vm(0, vcpus=2, mode="tdp_mmu"), vm(1, vcpus=2, mode="tdp_mmu"))
    rows_in = [
        A(0, 0, 0, 0),
        A(1, 512, 0, 1),
        A(2, 0, 1, 0),
        A(3, 512, 1, 1),
        S(10**9, 50),
        A(2 * 10**9, 1024, 0, 0),
        S(3 * 10**9, 1),
    ]
    res = both(rows_in, m, policy="cache")
    assert res.scans[0] == ScanRow(4, 10**9, "shrink", None, None, 50, 75, (0,), (75,), 0)
    r = fault_rows(res)[4]
    assert (r["refill"], r["attribution"], r["pages_refilled"]) == (
        Refill.SHRINKER,
        Attribution.CACHE_EVICTION,
        40,
    )
    # vm_list was [1, 0] after the first scan: the next scan starts at VM 1.
    assert res.scans[1].vms == (1,)


def test_rule_12_and_16_busy_vcpus_are_skipped() -> None:
    """vCPU 0 faults at t=0 (est 13200): busy over [0, 13200). A scan at 13199 skips it and
    empties vCPU 1; a scan at 13200 (half-open window, rule 23) empties vCPU 0."""
    m = meta(vm(0, vcpus=2, mode="tdp_mmu"))
    busy = both([A(0, 0, vcpu=0), A(1, 512, vcpu=1), S(13_199, 1000)], m, policy="cache")
    assert [c[3] for c in busy.cache_frees] == [1]
    idle = both([A(0, 0, vcpu=0), A(1, 512, vcpu=1), S(13_200, 1000)], m, policy="cache")
    assert [c[3] for c in idle.cache_frees] == [0, 1]


def test_rule_12_never_touches_page_tables() -> None:
    """Under cache, the refault after a scan allocates no SP: the page tables are intact."""
    rows = fault_rows(both([A(0, 0), S(100_000, 128), A(200_000, 8)], policy="cache"))
    assert rows[1]["new_sps"] == 0
    assert rows[1]["refill"] == Refill.SHRINKER


def test_rule_13_and_26_page_limit_recycles_oldest() -> None:
    """n_max 7. gfn 0 leaves 4 live SPs (root, PDPT, PD, PT 0). gfn 512 finds 7 - 4 = 3 < 5
    free: zap until 25 - 3 = 22 are counted, i.e. every non-root SP (3); its walk reallocates
    PDPT, PD and PT 1: recycled 3, new 3, est 2000 + 900 + one flush 10000 = 12900. gfn 1024
    does the same. gfn 1 then faults recycled: PT 0 was zapped, its leaves with it."""
    cfg = MmuConfig(n_max_min=7, n_max_divisor=1 << 40)
    rows = fault_rows(both([A(0, 0), A(1, 512), A(2, 1024), A(3, 1)], cfg=cfg))
    assert [(r["recycled_sps"], r["new_sps"], r["est_ns"]) for r in rows[1:3]] == [
        (3, 3, 12900),
        (3, 3, 12900),
    ]
    assert rows[1]["cause"] == Cause.COLD  # read before the page limit acted
    assert rows[3]["cause"] == Cause.RECYCLED


def test_rule_13_page_limit_applies_only_to_shadow_direct() -> None:
    cfg = MmuConfig(n_max_min=7, n_max_divisor=1 << 40)
    rows = fault_rows(both([A(i, i * 512) for i in range(10)], TDP, cfg=cfg))
    assert sum(r["recycled_sps"] for r in rows) == 0


def test_rule_14_and_28_unmap_removes_leaves_only() -> None:
    """unmap of 1 byte at gfn 0 removes that page's leaf (rounded up to a page); the refault has
    cause notifier and needs no SP. A 2 MiB leaf partly covered is removed whole."""
    rows = fault_rows(both([A(0, 0), U(10, 0, 1), A(20, 0), A(30, 1)], TDP))
    assert [(r["gfn"], r["cause"], r["new_sps"]) for r in rows] == [
        (0, Cause.COLD, 4),
        (0, Cause.NOTIFIER, 0),
        (1, Cause.COLD, 0),
    ]
    huge = meta(vm(mode="tdp_mmu", slots=(Memslot(0, GiB, "2m"),)))
    rows = fault_rows(both([A(0, 0), U(10, 100 * 4096, 4096), A(20, 300)], huge))
    assert [r["cause"] for r in rows] == [Cause.COLD, Cause.NOTIFIER]


def test_rule_14_unmap_of_the_whole_address_space() -> None:
    """unmap of [0, 2**64-1) removes every leaf, 4 KiB and 2 MiB, and no SP: each refault has
    cause notifier and needs no SP. The reference engine's cost is bounded by its SPs, not by
    the range's 2**43 regions (issue 12 item 15: it used to walk them all)."""
    slots = (Memslot(0, GiB, "2m"), Memslot(4 * GiB, GiB))
    two = meta(vm(mode="tdp_mmu", slots=slots))
    high = (4 * GiB) >> 12
    accesses = [A(0, 0), A(10, high), A(20, high + 9)]
    again = [A(40, 0), A(50, high), A(60, high + 9)]
    rows = fault_rows(both([*accesses, U(30, 0, (1 << 64) - 1), *again], two))
    assert [(r["row"], r["cause"], r["new_sps"]) for r in rows[3:]] == [
        (4, Cause.NOTIFIER, 0),
        (5, Cause.NOTIFIER, 0),
        (6, Cause.NOTIFIER, 0),
    ]


def test_rule_15_and_28_zap_all_invalidates_existing_leaves_only() -> None:
    """zap_all: gfn 0's refault is invalidated and reallocates the root (4 SPs); gfn 7 (never
    mapped under TDP) stays cold; a gfn unmapped before keeps notifier."""
    rows = fault_rows(
        both([A(0, 0), A(1, 512), U(2, 512 << 12, 4096), Z(3), A(4, 0), A(5, 7), A(6, 512)], TDP)
    )
    assert [(r["gfn"], r["cause"], r["new_sps"]) for r in rows[2:]] == [
        (0, Cause.INVALIDATED, 4),
        (7, Cause.COLD, 0),
        (512, Cause.NOTIFIER, 1),
    ]


def test_rule_27_the_root_comes_with_the_first_fault_and_is_never_zapped_oldest_first() -> None:
    """shadow_direct, 2 vCPUs. vCPU 0's first fault allocates the root with PDPT, PD and PT 0
    (4 SPs, 13200); vCPU 1's first fault (gfn 512) allocates only PT 1 (12300, from its own
    refill). shrink(128) zaps oldest first but skips the root: 4 freed, the root alone left.
    zap_all then removes that root (1 SP). The next fault (vCPU 1, gfn 1024, never mapped: cold)
    allocates a new root and its path: 4 SPs from vCPU 1's 39, no refill: 2000 + 1200."""
    res = both(
        [A(0, 0, vcpu=0), A(1, 512, vcpu=1), S(10, 128), Z(20), A(30, 1024, vcpu=1)],
        meta(vm(0, vcpus=2)),
    )
    rows = fault_rows(res)
    assert [(r["vcpu"], r["cause"], r["new_sps"], r["est_ns"]) for r in rows] == [
        (0, Cause.COLD, 4, 13200),
        (1, Cause.COLD, 1, 12300),
        (1, Cause.COLD, 4, 3200),
    ]
    assert [(s.freed, s.vms) for s in res.scans] == [(4, (0,))]
    assert res.sp_removals == [(2, 10, 0, 4), (3, 20, 0, 1)]


def test_rule_17_ties_keep_file_order() -> None:
    """A shrink at the same ns as an access, listed after it, acts after it."""
    res = both([A(5, 0), S(5, 3), A(5, 1)])
    assert fault_rows(res)[1]["cause"] == Cause.ZAPPED


def test_rule_18_and_24_pressure_window_inclusive_and_memcg_counts() -> None:
    """A memcg pass at 0 (it never calls the shrinker) starts the window: a first fault at
    exactly 1 s refills at 2500/page: 2000 + 1200 + 100000 = 103200. One ns later: 13200."""
    at = fault_rows(both([R(0, "memcg", 12), A(10**9, 0)], TDP, policy="none"))
    assert at[0]["est_ns"] == 103_200
    after = fault_rows(both([R(0, "memcg", 12), A(10**9 + 1, 0)], TDP, policy="none"))
    assert after[0]["est_ns"] == 13_200


def test_rule_18_costs_override() -> None:
    costs = CostModel(fault_base_ns=1, sp_alloc_ns=10, refill_page_ns=100)
    assert fault_rows(both([A(0, 0)], TDP, costs=costs))[0]["est_ns"] == 1 + 40 + 4000


def test_rule_9_reclaim_runs_the_core_arithmetic() -> None:
    """A shadow_direct VM with 4 SPs. kswapd at priority 12: delta = (4 >> 12)*4 // 20 = 0, no
    scan. drop_caches at priority 0: delta = 16 // 20 = 0, total 0 < 4... still nothing:
    the shrinker needs total >= freeable. With 5 such VMs (20 SPs) drop_caches gives delta 4:
    still < 20. Deferred stays 0."""
    res = both([A(0, 0), R(10, "kswapd", 12), R(20, "drop_caches", 0)])
    assert res.scans == []
    assert res.nr_deferred == 0


def test_rule_9_policy_none_never_scans() -> None:
    res = both([A(0, 0), S(10, 128), R(20, "drop_caches", 0)], policy="none")
    assert res.scans == []


def test_rule_10_and_29_shrink_scans_even_when_count_is_zero() -> None:
    """No SP at all: shrink(128) is still one scan call, freeing 0. shrink(0) under zap looks
    at no VM; under cache it empties the first idle vCPU and stops."""
    assert both([S(0, 128)]).scans == [ScanRow(0, 0, "shrink", None, None, 128, 0, (), (), 0)]
    assert both([A(0, 0), S(100, 0)]).scans[0].vms == ()
    m = meta(vm(0, vcpus=2, mode="tdp_mmu"))
    res = both([A(0, 0, vcpu=0), A(1, 512, vcpu=1), S(10**9, 0)], m, policy="cache")
    assert [c[3] for c in res.cache_frees] == [0]


def test_rule_19_what_every_run_reports(tmp_path: Path) -> None:
    """VM 0 shadow_direct with 2 vCPUs, VM 1 TDP with 1; policy zap.
    t0 VM 0 vCPU 0, gfn 0: root, PDPT, PD, PT 0 (4 SPs), 40 pages, 13200.
    t1 VM 0 vCPU 1, gfn 512: PT 1 only (1 SP), its own 40 pages: 12300.
    t2 VM 1, gfn 0: 4 SPs, 40 pages, 13200. Peak SPs now 5 + 4 = 9; caches 36 + 39 + 36 = 111.
    t10 shrink(2): VM 0 (head) loses its PDPT and PD (2 freed, one flush 10000); PT 0 and PT 1
    are unlinked (zapped).
    t20 VM 0 vCPU 0, gfn 3 (prefetched, cut off): new PDPT and PD, PT 0 relinked: 2600.
    t30 VM 0 vCPU 1, gfn 515 (prefetched by t1): PT 1 relinked: 2000.  t40 VM 1 gfn 0: hit.
    Stall zapped_page_tables 2600 + 2000 = 4600; none 13200 + 12300 + 13200 = 38700; stall
    per freed page (4600 + 0 + 10000) / 2 = 7300. The reference engine reports the same."""
    tmeta = meta(vm(0, vcpus=2), vm(1, mode="tdp_mmu"))
    trace = [
        A(0, 0, vm=0, vcpu=0),
        A(1, 512, vm=0, vcpu=1),
        A(2, 0, vm=1),
        S(10, 2),
        A(20, 3, vm=0, vcpu=0),
        A(30, 515, vm=0, vcpu=1),
        A(40, 0, vm=1),
    ]
    from replay import open_trace, run_policies, write_runs

    path = write_rows(tmp_path / "t.parquet", trace, tmeta)
    docs = {
        engine: write_runs(
            run_policies(open_trace(path), ("zap",), engine=engine), tmp_path / engine
        )[0]
        for engine in ("fast", "reference")
    }
    doc = docs["fast"]
    t = doc["totals"]
    assert (t["accesses"], t["faults"], t["hits"]) == (6, 5, 1)
    assert t["faults_by_attribution"] == {"none": 3, "cache_eviction": 0, "zapped_page_tables": 2}
    assert (t["faults_by_cause"]["cold"], t["faults_by_cause"]["zapped"]) == (3, 2)
    assert t["refills_by_kind"] == {"none": 2, "natural": 3, "shrinker": 0}
    assert (t["pages_refilled"], t["sps_allocated"], t["sps_relinked"]) == (120, 11, 2)
    assert (t["pages_freed"], t["scan_calls"], t["scan_flush_ns"]) == (2, 1, 10000)
    assert (t["peak_sp_pages"], t["peak_cache_pages"]) == (9, 111)
    assert t["stall_ns_by_attribution"] == {
        "none": 38700,
        "cache_eviction": 0,
        "zapped_page_tables": 4600,
    }
    assert t["stall_per_freed_page"] == 7300.0
    vm0, vm1 = doc["per_vm"]["0"], doc["per_vm"]["1"]
    assert (vm0["faults"], vm0["accesses"], vm0["pages_freed"], vm0["scan_calls"]) == (4, 4, 2, 1)
    assert (vm0["peak_sp_pages"], vm0["peak_cache_pages"], vm0["stall_per_freed_page"]) == (
        5,
        75,
        7300.0,
    )
    assert (vm1["faults"], vm1["accesses"], vm1["pages_freed"], vm1["scan_calls"]) == (1, 2, 0, 0)
    assert vm1["stall_per_freed_page"] is None  # nothing freed: undefined, not 0
    per_vcpu = doc["per_vcpu"]
    assert {
        k: (v["faults"], v["sps_allocated"], v["peak_cache_pages"]) for k, v in per_vcpu.items()
    } == {
        "0/0": (2, 6, 36),
        "0/1": (2, 1, 39),
        "1/0": (1, 4, 36),
    }
    assert per_vcpu["0/0"]["stall_ns_by_attribution"]["zapped_page_tables"] == 2600
    ref = docs["reference"]
    assert (ref["totals"], ref["per_vm"], ref["per_vcpu"]) == (t, doc["per_vm"], per_vcpu)


def test_rule_20_worked_example() -> None:
    """shrink(1) frees the PDPT: PD unlinked (zapped). The page limit (n_max 7, refill 5) then
    frees the orphaned PD first: its PT is unlinked (recycled). gfn 3 (present, cut off below
    the PT) faults recycled."""
    cfg = MmuConfig(n_max_min=7, n_max_divisor=1 << 40, refill_pages=5)
    two_gib = meta(vm(slots=(Memslot(0, 2 * GiB),)))
    # gfn 1 << 18 is in the second GiB: another PD under the (new) PDPT.
    res = both([A(0, 0), S(10, 1), A(20, 1 << 18), A(30, 3)], two_gib, cfg=cfg)
    rows = fault_rows(res)
    assert (rows[1]["cause"], rows[1]["recycled_sps"], rows[1]["new_sps"]) == (Cause.COLD, 1, 3)
    assert rows[2]["cause"] == Cause.RECYCLED


def test_rule_21_an_empty_cache_is_not_flagged() -> None:
    """vCPU 1 never faulted: a scan empties nothing from it, so its first refill is natural."""
    m = meta(vm(0, vcpus=2, mode="tdp_mmu"))
    rows = fault_rows(both([A(0, 0), S(10**9, 1000), A(2 * 10**9, 512, vcpu=1)], m, policy="cache"))
    assert rows[1]["refill"] == Refill.NATURAL


def test_rule_22_mmio_does_not_make_a_vcpu_busy() -> None:
    m = meta(vm(0, mode="tdp_mmu"))
    res = both([A(0, 0), A(10**9, 0x40000), S(10**9 + 1, 1)], m, policy="cache")
    assert [c[3] for c in res.cache_frees] == [0]


def test_rule_25_scan_flush_and_31_stall_per_freed_page() -> None:
    """zap: one scan frees 1 SP (flush 10000 on the scan row); the refault (zapped) costs 2300.
    Stall per freed page = (2300 + 0 + 10000) / 1."""
    from replay.run.summary import _per_freed, _stall

    res = both([A(0, 0), S(10, 1), A(20, 3)])
    stall = _stall(res.faults, CostModel())
    assert stall["zapped_page_tables"] == 2300
    assert _per_freed(stall, sum(s.flush_ns for s in res.scans), 1) == 12_300


def test_rule_31_cache_eviction_stall_is_the_refill_part() -> None:
    """After a cache scan, the refault refills 40 pages at 250: stall 10000 (not its 2000 base)."""
    from replay.run.summary import _stall

    res = both([A(0, 0), S(10**9, 128), A(2 * 10**9, 8)], TDP, policy="cache")
    assert _stall(res.faults, CostModel())["cache_eviction"] == 40 * 250


def test_rule_30_the_access_type_changes_no_leaf() -> None:
    """v1 models no fast faults and no NX huge-page rule: an access's op changes nothing. On a
    dirty-logging 2m slot (4 KiB leaves, rule 3b) under TDP, a read of gfn 0 faults; a write
    and an exec of gfn 0 then hit (no write-protection fault, no huge page split for exec);
    gfn 1 faults on its own leaf. The same trace with every op read gives the same rows."""
    dirty = meta(vm(mode="tdp_mmu", slots=(Memslot(0, GiB, "2m", dirty_log=True),)))

    def with_op(row: Row, op: str) -> Row:
        return {**row, "op": op}

    accesses = [(0, "read"), (0, "write"), (0, "exec"), (1, "exec")]
    trace = [with_op(A(t, gfn), op) for t, (gfn, op) in enumerate(accesses)]
    rows = fault_rows(both(trace, dirty))
    assert [(r["row"], r["gfn"], r["leaf_level"], r["new_sps"]) for r in rows] == [
        (0, 0, 1, 4),
        (3, 1, 1, 0),
    ]
    assert fault_rows(both([with_op(r, "read") for r in trace], dirty)) == rows


def test_rule_4_deepest_walk_fits_the_minimum() -> None:
    """A 5-level root's first fault takes 5 SPs from a freshly topped-up cache: no error."""
    rows = fault_rows(both([A(0, 0)], meta(vm(mode="tdp_mmu", root=5))))
    assert rows[0]["new_sps"] == 5


@pytest.mark.parametrize("split", [1, 2, 3])
def test_batches_split_anywhere_give_the_same_rows(split: int) -> None:
    rows_in = [A(0, 0), A(1, 9), S(2, 2), A(3, 3), A(4, 600)]
    whole = both(rows_in)
    parts = both(rows_in, split=split)
    assert fault_rows(whole) == fault_rows(parts)


def test_rule_32_only_zapped_translations_are_sampled() -> None:
    """shrink(3) zaps PDPT, PD and PT 0 (the oldest non-root SPs): gfns 0-7 lose their leaves
    (cause zapped); PT 1 (gfns 600-607, present) is unlinked with cause zapped. A region over
    gfns 0-1023 accessed at every check (rule 33: every zapped leaf), at t=50 as row 4 (rule 35):
    gfn 0 faults zapped with 3 new SPs and prefetches 0-7, so 1-7 hit; gfn 600 faults zapped
    and relinks PT 1, so 601-607 hit. gfn 900 was never mapped (cold): not sampled. The unmapped
    gfn 1000 (notifier) is not sampled either."""
    rows = [A(0, 0), A(10, 600), A(15, 1000), U(18, 1000 << 12, 4096), S(20, 3), D(50, 0, 1024)]
    got = [
        (r["row"], r["t_ns"], r["gfn"], r["cause"], r["new_sps"], r["relinked_sps"])
        for r in fault_rows(both(rows))[3:]
    ]
    assert got == [(5, 50, 0, Cause.ZAPPED, 3, 0), (5, 50, 600, Cause.ZAPPED, 0, 1)]
    # A region row after the refaults finds nothing zapped: no more faults.
    assert len(fault_rows(both([*rows, D(60, 0, 1024)]))) == 5
    # A region that leaves out the zapped leaves samples none of them.
    assert len(fault_rows(both([*rows[:-1], D(50, 2048, 1024)]))) == 3


def test_rule_32_none_and_cache_replay_exactly_the_logged_faults() -> None:
    """Under none and cache no cause is ever zapped: region rows add no fault, and the faults
    are the logged accesses' (cold, and the refault of the unmapped gfn 600)."""
    rows = [A(0, 0), A(10, 600), U(15, 600 << 12, 4096), R(20, "drop_caches", 0), A(25, 600)]
    rows += [D(50, 0, 1 << 18), S(60, 128), D(70, 0, 1 << 18)]
    for policy in ("none", "cache"):
        got = [(r["row"], r["cause"]) for r in fault_rows(both(rows, policy=policy))]
        assert got == [(0, Cause.COLD), (1, Cause.COLD), (4, Cause.NOTIFIER)], policy


def test_rule_33_the_draw_follows_nr_accesses() -> None:
    """A 2 MiB-backed VM has 2 MiB leaves of 512 pages: any nr_accesses > 0 gives q = 1 - (1 -
    p) ** (20 * 512), about 1. In 4 KiB leaves (shadow_direct, PT zapped: 512 missing leaves,
    prefetch refills 8 at a time) nr 1 of 20 gives q = 1 - 0.95 ** 20 = 0.64 per page; nr 0
    samples nothing."""
    import numpy as np

    from replay.mmu.sampled import chosen

    touched = [A(i, g) for i, g in enumerate(range(0, 512, 8))]
    base = [*touched, S(100, 3)]
    assert len(fault_rows(both([*base, D(200, 0, 512, nr=0)]))) == 64
    rows = fault_rows(both([*base, D(200, 0, 512, nr=1)]))[64:]
    # The faults are the groups whose first chosen page comes first in its group.
    on, _ = chosen(65, np.arange(512), np.ones(512, dtype=np.int64), (1, 20), 1)
    expected = sorted({int(g) & ~7 for g in np.flatnonzero(on)})
    assert [r["gfn"] & ~7 for r in rows] == expected
    assert 0.5 < on.mean() < 0.78
    # shrink(2) zaps the PDPT and the PD holding the 2 MiB leaf: the refault allocates both.
    huge = meta(vm(slots=(Memslot(0, GiB, "2m"),)))
    on, _ = chosen(2, np.array([0]), np.array([512]), (1, 20), 1)
    assert on.all()
    rows = fault_rows(both([A(0, 0), S(1, 2), D(2, 0, 512, nr=1)], huge))
    assert [(r["row"], r["cause"], r["new_sps"], r["leaf_level"]) for r in rows] == [
        (0, Cause.COLD, 3, 2),
        (2, Cause.ZAPPED, 2, 2),
    ]


def test_rule_34_the_vcpu_comes_from_the_draw() -> None:
    """A 4-vCPU VM: each sampled fault's vCPU is the draw's low 32 bits mod 4."""
    import numpy as np

    from replay.mmu.sampled import mix

    four = meta(vm(vcpus=4))
    rows = [A(0, 0), A(1, 600, vcpu=3), S(2, 3), D(3, 0, 1024)]
    got = fault_rows(both(rows, four))[2:]
    assert [r["gfn"] for r in got] == [0, 600]
    for r in got:
        assert r["vcpu"] == int(mix(3, np.array([r["gfn"]]))[0] & np.uint64(0xFFFFFFFF)) % 4
