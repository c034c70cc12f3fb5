"""The series' two experiments as shipped scenarios, checked against their sources (issue 17).

``selftest-mmu-shrinker`` is the v2 selftest ``x86_64/mmu_shrinker_test.c``;
``dirty-log-perf-drop-caches`` is the v1 testing (drop_caches in a loop while
``dirty_log_perf_test`` runs). Each file's header cites the source of every value. Memory is
scaled down through the scenarios' variables where a test replays, so that every number below
can be checked by hand from replay/mmu/MODEL.md's rules.

Layout used throughout: memstress puts the test memory ``T = vcpus * mem_per_vcpu`` bytes at
GPA ``2**46 - T - 4096`` (guest MAXPHYADDR 46, the scenarios' stated guess), so the slot starts
one 4 KiB page below a 2 MiB boundary and ends 4 KiB below 2**46, inside one 1 GiB region.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from replay.mmu.config import Attribution, Cause, Refill
from replay.run.driver import run_policies
from replay.synth import generate, load_scenario
from replay.trace.reader import open_trace
from replay.trace.schema import EVENT_CODE, OPS, SOURCE_CODE, TraceMeta
from tests.synth.helpers import read_all

if TYPE_CHECKING:
    from pathlib import Path

    from replay.run.records import Replay

MiB = 1 << 20
GiB = 1 << 30
SELFTEST = "selftest-mmu-shrinker"
DIRTY_LOG = "dirty-log-perf-drop-caches"
TOP = 1 << 46
"""The guest-physical top the scenarios assume (MAXPHYADDR 46)."""


def synth(tmp_path: Path, name: str, **variables: str) -> Path:
    out = tmp_path / f"{name}.parquet"
    generate(load_scenario(name, variables=variables), out)
    return out


def replay_as(path: Path, mode: str, policies: tuple[str, ...], engine: str) -> Replay:
    """Replay with every VM in ``mode``: what ``replay run --mmu MODE`` does."""
    trace = open_trace(path)
    meta = trace.meta
    vms = tuple(replace(vm, mmu_mode=mode) for vm in meta.vms)
    trace = replace(
        trace,
        meta=TraceMeta(vms, meta.coverage, meta.provenance, meta.observed, meta.schema_version),
    )
    return run_policies(trace, policies, engine=engine)  # type: ignore[arg-type]


def by_policy(rep: Replay) -> dict[str, Any]:
    return {run.policy: run.result for run in rep.runs}


def host_times(cols: dict[str, np.ndarray], event: str) -> np.ndarray:
    times: np.ndarray = cols["t_ns"][cols["event"] == EVENT_CODE[event]]
    return times


# --- selftest-mmu-shrinker: the events ------------------------------------------------------


def test_selftest_defaults_make_the_tests_events(tmp_path: Path) -> None:
    """The selftest's defaults, -v 2 -b 1G -i 5 -d 100, full size.

    - One VM, 2 vCPUs, TDP MMU, 4-level root; the test slot of 2 x 1 GiB at
      2**46 - 2 GiB - 4 KiB = 0x3fff7ffff000 (memstress_create_vm's placement).
    - Per iteration one memslot delete, so one ``zap_all``, then one scan of 1000
      (``"0 0 1000"``): 5 of each. The delete's zap comes after memslot_ms = 1.5 ms of ioctls,
      the scan scan_gap_us = 50 us later, then the 100 ms sleep: period 101.5 ms, zaps at
      1.5, 103.0, 204.5, 306.0, 407.5 ms and each scan 50 us after its zap.
    - Duration = the end of the last sleep = 5 x 101.5 ms + 0.05 ms = 507.55 ms; each vCPU
      writes at 500,000 a second: round(500,000 x 0.50755) = 253,775 accesses, all writes.
    """
    path = synth(tmp_path, SELFTEST)
    trace, cols = read_all(path)
    (vm,) = trace.meta.vms
    assert (vm.vcpus, vm.mmu_mode, vm.root_level) == (2, "tdp_mmu", 4)
    test_slot = vm.memslots[0]
    assert (test_slot.gpa_start, test_slot.size, test_slot.backing) == (
        0x3FFF7FFFF000,
        2 * GiB,
        "4k",
    )
    assert test_slot.gpa_start == TOP - 2 * GiB - 4096
    zaps, scans = host_times(cols, "zap_all"), host_times(cols, "shrink")
    period_ns = 101_500_000
    assert list(zaps) == [1_500_000 + k * period_ns for k in range(5)]
    assert list(scans) == [1_550_000 + k * period_ns for k in range(5)]
    assert set(cols["nr_to_scan"][cols["event"] == EVENT_CODE["shrink"]]) == {1000}
    # Each iteration: its memslot event, then its scan, before the next iteration's.
    order = cols["event"][np.isin(cols["event"], [EVENT_CODE["zap_all"], EVENT_CODE["shrink"]])]
    assert list(order) == [EVENT_CODE["zap_all"], EVENT_CODE["shrink"]] * 5
    assert not (cols["event"] == EVENT_CODE["reclaim"]).any()
    access = cols["event"] == EVENT_CODE["access"]
    for v in range(2):
        assert int((access & (cols["vcpu"] == v)).sum()) == 253_775
    assert set(cols["op"][access]) == {OPS.index("write")}
    assert cols["t_ns"][-1] < 507_550_000


def test_selftest_access_pattern_is_memstress_partitions_page_by_page(tmp_path: Path) -> None:
    """-b 64M: each vCPU walks its own 64 MiB = 16,384 pages, one write per 4 KiB page, in order.

    vCPU v owns gfns ``S + 16384 v .. S + 16384 v + 16383`` with ``S = (2**46 - 128 MiB -
    4096) >> 12``. At 500,000 a second a pass takes 16,384 / 500,000 = 32.8 ms, so the
    253,775 accesses of the 507.55 ms are 15 whole passes (245,760) and 8,015 pages more, and
    pass k's first access is page 0 again.
    """
    path = synth(tmp_path, SELFTEST, mem_per_vcpu="64MiB")
    _, cols = read_all(path)
    access = cols["event"] == EVENT_CODE["access"]
    start = (TOP - 128 * MiB - 4096) >> 12
    pages = 16_384
    for v in range(2):
        gfn = (cols["gpa"][access & (cols["vcpu"] == v)] >> 12).astype(np.int64)
        assert len(gfn) == 253_775
        expect = start + v * pages + np.arange(len(gfn)) % pages
        assert np.array_equal(gfn, expect)
        assert len(gfn) // pages == 15
        assert len(gfn) % pages == 8_015


def test_selftest_options_are_variables(tmp_path: Path) -> None:
    """--set vcpus=4 iterations=3 delay_ms=10 mem_per_vcpu=8MiB: -v 4 -i 3 -d 10 -b 8M.

    Period 1.5 + 10 = 11.5 ms: 3 zap_all at 1.5, 13.0, 24.5 ms, 3 scans 50 us after each; a
    32 MiB test slot at 2**46 - 32 MiB - 4 KiB; 4 vCPUs of 8 MiB = 2,048 pages each.
    """
    sets = {"vcpus": "4", "iterations": "3", "delay_ms": "10", "mem_per_vcpu": "8MiB"}
    path = synth(tmp_path, SELFTEST, **sets)
    trace, cols = read_all(path)
    (vm,) = trace.meta.vms
    assert vm.vcpus == 4
    assert (vm.memslots[0].gpa_start, vm.memslots[0].size) == (TOP - 32 * MiB - 4096, 32 * MiB)
    assert list(host_times(cols, "zap_all")) == [1_500_000, 13_000_000, 24_500_000]
    assert list(host_times(cols, "shrink")) == [1_550_000, 13_050_000, 24_550_000]
    access = cols["event"] == EVENT_CODE["access"]
    start = (TOP - 32 * MiB - 4096) >> 12
    for v in range(4):
        gfn = cols["gpa"][access & (cols["vcpu"] == v)] >> 12
        assert gfn.min() == start + 2048 * v
        assert gfn.max() == start + 2048 * v + 2047


# --- selftest-mmu-shrinker: what each policy does ---------------------------------------------


def cache_levels_at_scans(faults: dict[str, np.ndarray], scans: list[Any], vcpus: int) -> list[Any]:
    """Replay rules 3a, 12, 16 and 23 on the fault rows alone, scan by scan.

    Between scans, a vCPU's ``shadow_page.nobjs`` moves by ``pages_refilled - new_sps`` at each
    of its faults (a refill tops it up to 40, each new SP takes one). At a scan at time t, vCPU
    v is busy when one of its faults at or before t (faults at the scan's nanosecond precede it
    in the file) has ``t_f + est_ns > t``: the patch's ``mutex_trylock`` fails. The series'
    ``mmu_shrink_count()`` at that moment is the sum of every vCPU's ``nobjs``
    (``mmu_shadowed_info_cache`` is never filled in these direct modes); ``mmu_shrink_scan()``
    with nr_to_scan 1000 cannot stop early (1000 > 40 x vcpus), so it frees the sum over the
    idle vCPUs and sets their ``nobjs`` to 0.

    Returns ``(count, busy vCPUs, freed by the idle ones, nobjs per vCPU)`` per scan.
    """
    nobjs = np.zeros(vcpus, dtype=np.int64)
    done = 0
    out = []
    for scan in scans:
        upto = int(np.searchsorted(faults["t_ns"], scan.t_ns, side="right"))
        recent = slice(done, upto)
        for v in range(vcpus):
            sel = faults["vcpu"][recent] == v
            nobjs[v] += int(faults["pages_refilled"][recent][sel].sum())
            nobjs[v] -= int(faults["new_sps"][recent][sel].sum())
        done = upto
        busy = set()
        for v in range(vcpus):
            sel = faults["vcpu"][:upto] == v
            ends = faults["t_ns"][:upto][sel] + faults["est_ns"][:upto][sel]
            if len(ends) and int(ends.max()) > scan.t_ns:
                busy.add(v)
        freed = sum(int(nobjs[v]) for v in range(vcpus) if v not in busy)
        out.append((int(nobjs.sum()), busy, freed, nobjs.copy()))
        for v in range(vcpus):
            if v not in busy:
                nobjs[v] = 0
    return out


def test_cache_scans_empty_only_idle_vcpus_and_free_what_count_reports(tmp_path: Path) -> None:
    """The defaults, full size, policy cache: the trylock race the selftest is written to provoke.

    Every access after a zap_all faults, so each vCPU is inside a fault (about 2 us each, rule
    18) most of the time; a scan 50 us after the zap finds each vCPU idle or busy by chance.
    Rule 12 skips the busy ones. At each scan the freed pages must be exactly the idle vCPUs'
    ``nobjs`` as rebuilt from the fault rows (see ``cache_levels_at_scans``), never more than
    ``mmu_shrink_count()`` = the sum over both vCPUs, never more than 2 x 40; a busy vCPU keeps
    its pages (its next refill is not the shrinker's), an emptied one refills with
    ``refill = shrinker`` at its next fault, which is the ``cache_eviction`` attribution.
    """
    path = synth(tmp_path, SELFTEST)
    result = by_policy(replay_as(path, "tdp_mmu", ("cache",), "fast"))["cache"]
    faults, scans = result.faults, result.scans
    assert len(scans) == 5
    levels = cache_levels_at_scans(faults, scans, 2)
    for scan, (count, busy, freed, nobjs) in zip(scans, levels, strict=True):
        assert scan.nr_to_scan == 1000
        assert scan.freed == freed <= count <= 80
        for v in range(2):
            later = (faults["vcpu"] == v) & (faults["t_ns"] > scan.t_ns)
            if v not in busy and nobjs[v] > 0:
                # Emptied: its very next fault refills from the shrinker's emptying.
                assert faults["refill"][later][0] == Refill.SHRINKER
                assert faults["attribution"][later][0] == Attribution.CACHE_EVICTION
            elif v in busy:
                # Skipped: its pages stay, so its next refill is an ordinary one.
                refills = faults["refill"][later][faults["pages_refilled"][later] > 0]
                assert len(refills) == 0 or refills[0] == Refill.NATURAL
    # The race is visible: some scans met a busy vCPU, some freed pages.
    assert any(busy for _, busy, _, _ in levels)
    assert any(freed for _, _, freed, _ in levels)
    evictions = faults["attribution"] == Attribution.CACHE_EVICTION
    assert int(evictions.sum()) >= 1
    assert set(faults["refill"][evictions]) == {Refill.SHRINKER}


SCALED = {
    "mem_per_vcpu": "4MiB",
    "iterations": "2",
    "delay_ms": "100",
    "memslot_ms": "100",
    "scan_gap_us": "60000",
    "rate": "20000",
}
"""The selftest scaled for hand arithmetic: 2 vCPUs x 1,024 pages, each pass 1024 / 20,000 s =
51.2 ms, zap_all at 100 and 300 ms (period 100 + 100 ms), each scan 60 ms after its zap, when
every vCPU has finished re-mapping its slice and is idle (no fault for ~9 ms)."""


def test_scaled_selftest_by_hand_under_tdp_mmu(tmp_path: Path) -> None:
    """Policies cache, zap and none on the TDP MMU, every number by hand.

    Slot: 8 MiB at 2**46 - 8 MiB - 4 KiB. In 2 MiB regions R0..R4 from 2**46 - 10 MiB, vCPU 0's
    pages are 1 in R0, 512 in R1, 511 in R2; vCPU 1's are 1 in R2, 512 in R3, 511 in R4. A full
    pass of both therefore allocates root + PDPT + PD + 5 PTs = 8 SPs (rule 3d), whoever
    allocates which. Each vCPU's first fault refills 40 (nobjs 0 < 5, rule 3a); neither drops
    below 40 - 6 > 5 again, so no other refill.

    - Pass 1 (0-51.2 ms): 1,024 cold faults a vCPU; ``count()`` = 80 - 8 = 72.
    - zap_all at 100 ms: every leaf and SP goes, the caches stay (rule 15); the next pass
      refaults all 2 x 1,024 pages (``invalidated``) and rebuilds 8 SPs: ``count()`` = 64.
    - Scan at 160 ms, both idle: ``cache`` frees 64, VM 0. ``zap`` frees 0: TDP MMU pages are
      never counted (rule 11). ``none``: no scan rows (rule 12).
    - zap_all at 300 ms: under ``cache`` each vCPU's first refault finds nobjs 0: refill 40
      from an emptied cache, ``refill = shrinker``, attribution ``cache_eviction`` (rule 7): 2
      such faults. 8 SPs again: the scan at 360 ms frees 80 - 8 = 72.
    - Faults: 3 passes x 2,048 = 6,144 under every policy (2,048 cold, 4,096 invalidated).
      Pages refilled: 80 under ``none`` and ``zap``, 80 + 2 x 40 = 160 under ``cache``.
    """
    path = synth(tmp_path, SELFTEST, **SCALED)
    runs = by_policy(replay_as(path, "tdp_mmu", ("zap", "none", "cache"), "reference"))
    cache, zap, none = runs["cache"], runs["zap"], runs["none"]
    assert [(s.t_ns, s.nr_to_scan, s.freed, s.vms) for s in cache.scans] == [
        (160_000_000, 1000, 64, (0,)),
        (360_000_000, 1000, 72, (0,)),
    ]
    assert [(s.freed, s.vms) for s in zap.scans] == [(0, ()), (0, ())]
    assert none.scans == []
    levels = cache_levels_at_scans(cache.faults, cache.scans, 2)
    assert [(count, busy) for count, busy, _, _ in levels] == [(64, set()), (72, set())]
    for res, refilled, evicted in ((none, 80, 0), (zap, 80, 0), (cache, 160, 2)):
        f = res.faults
        assert len(f["t_ns"]) == 6_144
        assert int((f["cause"] == Cause.COLD).sum()) == 2_048
        assert int((f["cause"] == Cause.INVALIDATED).sum()) == 4_096
        assert int(f["pages_refilled"].sum()) == refilled
        assert int(f["new_sps"].sum()) == 24
        evictions = f["attribution"] == Attribution.CACHE_EVICTION
        assert int(evictions.sum()) == evicted
        assert not (f["attribution"] == Attribution.ZAPPED_PAGE_TABLES).any()
    evictions = cache.faults["attribution"] == Attribution.CACHE_EVICTION
    assert sorted(cache.faults["vcpu"][evictions]) == [0, 1]
    assert (cache.faults["t_ns"][evictions] > 300_000_000).all()
    assert set(cache.faults["pages_refilled"][evictions]) == {40}


def test_scaled_selftest_by_hand_under_shadow_direct_zap(tmp_path: Path) -> None:
    """--mmu shadow_direct: the old shrinker zaps what the pass rebuilt, and the guest refaults.

    A pass is 263 faults, not 2,048, because shadow_direct prefetches the 8-aligned group
    (rule 3e): the slot's first page is the last of its group, whose other entries lie outside
    every memslot, so it maps alone (1); vCPU 0's pages 1-1016 are 127 groups; the group of
    pages 1017-1024 straddles the two slices and faults once (1); vCPU 1's pages 1025-2040 are
    127 groups; its last 7 pages' group runs past the slot's end, so they fault one by one (7).
    1 + 127 + 1 + 127 + 7 = 263, whoever takes the shared group.

    At each scan (160 and 360 ms) the VM has root + PDPT + PD + 5 PTs = 8 SPs; ``count()`` is
    8 and ``scan(1000)`` zaps every SP but the root (rule 11): freed 7, VM 0. Every leaf goes,
    so the rest of the pass after each scan refaults all 263 with cause ``zapped``: 526
    ``zapped_page_tables`` faults, and 7 SPs rebuilt per scan (new SPs 24 + 14 = 38). Under
    ``none`` the same trace has 3 x 263 = 789 faults and no zapped ones.
    """
    path = synth(tmp_path, SELFTEST, **SCALED)
    runs = by_policy(replay_as(path, "shadow_direct", ("zap", "none"), "reference"))
    zap, none = runs["zap"], runs["none"]
    assert [(s.t_ns, s.freed, s.vms) for s in zap.scans] == [
        (160_000_000, 7, (0,)),
        (360_000_000, 7, (0,)),
    ]
    assert none.scans == []
    assert len(none.faults["t_ns"]) == 789
    assert int((none.faults["cause"] == Cause.COLD).sum()) == 263
    zapped = zap.faults["attribution"] == Attribution.ZAPPED_PAGE_TABLES
    assert int(zapped.sum()) == 526
    assert set(zap.faults["cause"][zapped]) == {Cause.ZAPPED}
    t = zap.faults["t_ns"][zapped]
    assert int(((t > 160_000_000) & (t < 300_000_000)).sum()) == 263
    assert int((t > 360_000_000).sum()) == 263
    assert len(zap.faults["t_ns"]) == 789 + 526
    assert int(zap.faults["new_sps"].sum()) == 38


def test_defaults_under_tdp_mmu_zap_free_nothing(tmp_path: Path) -> None:
    """The old shrinker on a TDP MMU host: 5 scan calls, 0 pages, no zapped faults (rule 11)."""
    path = synth(tmp_path, SELFTEST, mem_per_vcpu="256MiB")
    zap = by_policy(replay_as(path, "tdp_mmu", ("zap",), "fast"))["zap"]
    assert [(s.nr_to_scan, s.freed) for s in zap.scans] == [(1000, 0)] * 5
    assert not (zap.faults["attribution"] != Attribution.NONE).any()


# --- dirty-log-perf-drop-caches ----------------------------------------------------------------

RUN_S = 1024 / 262_144 + 0.05 + 1024 / 2_000_000 + 0.02 + 1024 / 2_000_000 + 0.2
"""One run with -b 4M: populate 1,024 pages at 262,144 a second (3.906 ms), 50 ms to enable
dirty logging, a dirty pass at 2 M a second (0.512 ms), 20 ms to get and clear the log, the
second pass, 200 ms to the next run: 274.93 ms."""


def test_dirty_log_events_follow_the_source(tmp_path: Path) -> None:
    """-v 2 -b 4M, drop_caches every 100 ms: the runs, their passes and the echoes.

    - 5 runs = 5 VMs, newest first on vm_list: run5, run4, ..., run1; run k starts at
      (k - 1) x 274.93 ms. Each has 2 vCPUs and an 8 MiB test slot at 2**46 - 8 MiB - 4 KiB.
    - Per vCPU: populate + 2 dirty iterations = 3 passes over its 1,024 pages = 3,072 writes,
      1,024 of them inside the populate window [start, start + 3.906 ms).
    - The echoes: from 0.25 s every 100 ms up to the end (5 x 274.93 = 1374.65 ms):
      int(1.12465 / 0.1) = 11 echoes, each 2 priority-0 ``drop_caches`` passes 1 ms apart: 22
      reclaim events.
    """
    path = synth(tmp_path, DIRTY_LOG, vcpus="2", mem_per_vcpu="4MiB", drop_period_ms="100")
    trace, cols = read_all(path)
    assert [v.name for v in trace.meta.vms] == ["run5", "run4", "run3", "run2", "run1"]
    access = cols["event"] == EVENT_CODE["access"]
    start = (TOP - 8 * MiB - 4096) >> 12
    for vm in trace.meta.vms:
        assert vm.vcpus == 2
        assert (vm.memslots[0].gpa_start, vm.memslots[0].size) == (TOP - 8 * MiB - 4096, 8 * MiB)
        run_start = (int(vm.name[3:]) - 1) * RUN_S
        for v in range(2):
            mine = access & (cols["vm"] == vm.id) & (cols["vcpu"] == v)
            gfn = (cols["gpa"][mine] >> 12).astype(np.int64)
            assert np.array_equal(gfn, start + 1024 * v + np.arange(3072) % 1024)
            t = cols["t_ns"][mine] / 1e9
            populate = (t >= run_start) & (t < run_start + 1024 / 262_144)
            assert int(populate.sum()) == 1024
    reclaim = cols["event"] == EVENT_CODE["reclaim"]
    t = cols["t_ns"][reclaim]
    assert len(t) == 22
    expect = [round((0.25 + 0.1 * k) * 1e9) + p * 1_000_000 for k in range(11) for p in range(2)]
    assert np.abs(t - np.array(expect)).max() <= 1
    assert set(cols["priority"][reclaim]) == {0}
    assert set(cols["source"][reclaim]) == {SOURCE_CODE["drop_caches"]}
    assert not (cols["event"] == EVENT_CODE["shrink"]).any()


@pytest.fixture(scope="module")
def dirty_log_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    path = synth(
        tmp_path_factory.mktemp("dl"), DIRTY_LOG, mem_per_vcpu="4MiB", drop_period_ms="200"
    )
    return {
        mode: by_policy(replay_as(path, mode, ("zap", "none", "cache"), "reference"))
        for mode in ("tdp_mmu", "shadow_direct")
    }


def test_dirty_log_drop_caches_by_hand_under_cache(dirty_log_runs: dict[str, Any]) -> None:
    """-v 1 -b 4M, an echo (2 priority-0 passes) every 200 ms: rule 9 with rule 12's count.

    Each run's VM has 1 vCPU; its populate pass allocates root + PDPT + PD + 3 PTs = 6 SPs (the
    slot's 1,024 pages span 3 regions of 2 MiB) from one refill of 40: 34 pages stay cached.
    Runs finish populating at 3.9, 278.8, 553.8, 828.7 and 1103.6 ms; the echoes at 250, 450,
    650, 850 and 1050 ms fall between them. With ``delta = (count * 4) // 20``:

    - 250 ms, count 34, delta 6: total 6 then 12, below 34 and 128: no scan; deferred 12.
    - 450 ms, count 68, delta 13: totals 25, 38: no scan; deferred 38.
    - 650 ms, count 102, delta 20: totals 58, 78: no scan; deferred 78.
    - 850 ms, count 136, delta 27: 105 (no scan), then 132 >= 128: one ``scan(128)`` at
      851 ms. From vm_list's head: run5 (never ran, 0 pages), run4, run3, run2 (34 each, 102),
      run1 (136 >= 128: stop). Freed 136; deferred 105 + 27 - 128 = 4.
    - 1050 ms: count 0 (run5 has not run yet): no scan.

    No emptied VM ever runs again, so no fault is a ``cache_eviction``: the v1 testing saw pages
    "reported and released" without ever racing a fault.
    """
    cache = dirty_log_runs["tdp_mmu"]["cache"]
    assert [(s.t_ns, s.source, s.priority, s.nr_to_scan, s.freed, s.vms) for s in cache.scans] == [
        (851_000_000, "drop_caches", 0, 128, 136, (0, 1, 2, 3, 4)),
    ]
    assert cache.scans[0].freed_by_vm == (0, 34, 34, 34, 34)
    assert not (cache.faults["attribution"] != Attribution.NONE).any()
    assert len(cache.faults["t_ns"]) == 5 * 1024  # populate only: the dirty passes hit


def test_dirty_log_drop_caches_by_hand_under_zap(dirty_log_runs: dict[str, Any]) -> None:
    """Policy zap: nothing on the TDP MMU; on shadow_direct one small zap of a finished run.

    TDP MMU: ``count()`` is 0 at every pass, so no scan call at all (rule 9 stops at 0).
    shadow_direct: ``count()`` = live SPs, 6 per finished run. Echoes: 250 ms count 6, delta
    1: totals 1, 2. 450 ms count 12, delta 2: 4, 6. 650 ms count 18, delta 3: 9, 12. 850 ms
    count 24, delta 4: 16, 20. 1050 ms count 24: total 24 >= count: ``scan(24)`` zaps the first
    VM with SPs from the head, run4 (run5 has none yet): its 5 SPs below the root, freed 5, and
    stops (one VM per call); the second pass: count 19, delta 3, total 3: no scan. run4 never
    runs again: no zapped fault.
    """
    assert dirty_log_runs["tdp_mmu"]["zap"].scans == []
    zap = dirty_log_runs["shadow_direct"]["zap"]
    assert [(s.t_ns, s.nr_to_scan, s.freed, s.vms) for s in zap.scans] == [
        (1_050_000_000, 24, 5, (1,)),
    ]
    assert not (zap.faults["attribution"] != Attribution.NONE).any()
    for mode in ("tdp_mmu", "shadow_direct"):
        assert dirty_log_runs[mode]["none"].scans == []
