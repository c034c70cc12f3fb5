from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import replay.run.sink as sink_module
from replay.mmu.results import FAULT_COLUMNS, FaultStore
from replay.run.sink import FaultSink
from replay.run.stats import _Peaks


def test_peaks_follow_trace_rows_across_chunks() -> None:
    """Group 0: +4 (row 1), +1 (row 5), -3 and +2 in row 7 (one event: net -1), +3 (row 9).
    Running 4, 5, 4, 7: peak 7. Group 1: -2 then +1: never above 0. Fed in two chunks."""
    p = _Peaks(2)
    p.feed(np.array([0, 0, 1]), np.array([1, 5, 2]), np.array([4, 1, -2]))
    p.feed(np.array([0, 0, 0, 1]), np.array([7, 7, 9, 8]), np.array([-3, 2, 3, 1]))
    assert p.peak.tolist() == [7, 0]
    assert p.level.tolist() == [7, -1]


@pytest.mark.parametrize("groups", [1, 2])
def test_peaks_of_rows_out_of_order_and_in_order_agree(groups: int) -> None:
    """Rows 9, 3, 3, 6 with +5, +2, -4, +1 in trace order are 3 (+2 -4 = -2), 6 (+1 -> -1),
    9 (+5 -> 4): peak 4. The same rows given in order (``ordered``) give the same. With two
    groups, group 1 gets the same changes on rows 2, 4, 5, 7 and peaks the same."""
    rows = np.array([9, 3, 3, 6])
    deltas = np.array([5, 2, -4, 1])
    order = np.argsort(rows, kind="stable")
    for feed in ("unsorted", "ordered"):
        p = _Peaks(groups)
        g = np.zeros(4, dtype=np.int64)
        if feed == "unsorted":
            p.feed(g, rows, deltas)
        else:
            p.feed(g, rows[order], deltas[order], ordered=True)
        if groups == 2:
            p.feed(np.ones(4, dtype=np.int64), np.array([2, 4, 5, 7]), np.array([2, -4, 1, 5]))
        assert p.peak.tolist() == [4] * groups, feed
        assert p.level.tolist() == [4] * groups, feed


def test_a_row_that_nets_to_less_does_not_peak_inside() -> None:
    """A page-limit fault zaps 21 then allocates 1 in the same row: no transient peak."""
    p = _Peaks(1)
    p.feed(np.zeros(3, np.int64), np.array([1, 2, 2]), np.array([30, -21, 1]))
    assert p.peak.tolist() == [30]


def _chunk(start: int, n: int) -> dict[str, np.ndarray]:
    rows = np.arange(start, start + n)
    return {
        k: (rows % 3).astype(dt) if k in ("cause", "refill", "attribution") else rows.astype(dt)
        for k, dt in FAULT_COLUMNS.items()
    }


def test_spilled_sink_reads_back_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sink_module, "SPILL_ROWS", 100)
    sink = FaultSink(tmp_path / "f.parquet", {b"k": b"v"})
    assert isinstance(sink, FaultStore)  # what an engine writes into and EngineResult reads
    for start, n in ((0, 30), (30, 150), (180, 7)):
        sink.add(_chunk(start, n))
    sink.close()
    memory = FaultSink()
    memory.add(_chunk(0, 187))
    got, want = sink.arrays(), memory.arrays()
    assert all(np.array_equal(got[k], want[k]) for k in FAULT_COLUMNS)
    assert [len(c["row"]) for c in sink.chunks()] == [100, 87]

    import pyarrow.parquet as pq

    md = pq.read_metadata(tmp_path / "f.parquet")
    assert md.metadata[b"k"] == b"v"
    assert md.num_row_groups == 2


@pytest.mark.parametrize("scenario", ["legacy-mmu-pressure", "many-small-vms"])
def test_stats_fed_during_the_replay_match_stats_from_the_rows(
    scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The summary, timeline and cache levels fed on the writer thread, 97 fault rows at a time
    while the engine still appends to its removal logs, equal those computed after the replay
    from all the rows at once (the in-memory sink hands them on in one chunk)."""
    from replay.mmu.config import Policy
    from replay.run.driver import run_policies
    from replay.run.summary import summarize_with_timeline
    from replay.synth import generate, load_scenario
    from replay.trace import open_trace

    trace = tmp_path / "t.parquet"
    generate(load_scenario(scenario, accesses=30_000), trace)
    policies: tuple[Policy, ...] = ("zap", "cache")
    whole = run_policies(open_trace(trace), policies, bucket_ns=10_000_000)
    monkeypatch.setattr(sink_module, "SPILL_ROWS", 97)
    work = tmp_path / "work"
    work.mkdir()
    streamed = run_policies(open_trace(trace), policies, bucket_ns=10_000_000, workdir=work)
    for a, b in zip(whole.runs, streamed.runs, strict=True):
        assert b.sink.spill_path is not None
        assert b.result.sink is b.sink
        removals = a.result.sp_removals if a.policy == "zap" else a.result.cache_frees
        assert len(removals) > 20, "removals between the chunks are what this test is about"
        blocks_a, timeline_a, levels_a = summarize_with_timeline(whole, a)
        blocks_b, timeline_b, levels_b = summarize_with_timeline(streamed, b)
        assert blocks_a == blocks_b
        assert blocks_a["totals"]["faults"] > 97 * 5
        for x, y in ((timeline_a, timeline_b), (levels_a, levels_b)):
            assert x.keys() == y.keys()
            assert all(np.array_equal(x[k], y[k]) for k in x)
        # A second call gives the same again (finishing does not consume the statistics).
        assert summarize_with_timeline(streamed, b)[0] == blocks_b


@pytest.mark.parametrize("background", [False, True])
def test_lanes_log_their_page_limit_zaps_before_their_rows_feed_the_statistics(
    background: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two shadow_direct VMs with page limits of 6 SPs (rule 13 zaps inside every epoch), every
    epoch split between two lanes, row groups of 8 rows fed to the statistics as they spill:
    the statistics are those of one thread. The lanes' page-limit zaps must reach the removal
    log before the rows that follow them feed the statistics, or the zaps count as later and
    the peak SP pages come out far too high (694 for 12, seen with the order reversed)."""
    import random

    from replay.mmu import lanes
    from replay.mmu.config import MmuConfig
    from replay.run.driver import run_policies
    from replay.run.summary import summarize
    from replay.trace import open_trace
    from replay.trace.schema import Memslot, TraceMeta, VmSpec
    from tests.builders import write_rows
    from tests.mmu.helpers import A

    page, base = 4096, 1 << 30
    slot = Memslot(base - 200 * page, 400 * page)
    vms = tuple(VmSpec(i * 5 + 1, f"vm{i}", 2, "shadow_direct", 4, (slot,)) for i in range(2))
    meta = TraceMeta(vms=vms, coverage="all-accesses", provenance={})
    draw = random.Random(1)
    rows = [
        A(1000 * (i + 1), (base >> 12) - 200 + draw.randrange(400), vm.id, draw.randrange(2))
        for i, vm in enumerate(draw.choice(vms) for _ in range(400))
    ]
    trace = open_trace(write_rows(tmp_path / "t.parquet", rows, meta))
    monkeypatch.setattr(lanes, "MIN_SPLIT", 0)
    monkeypatch.setattr(sink_module, "SPILL_ROWS", 8)
    docs = []
    for threads in (1, 2):
        work = tmp_path / f"w{threads}"
        work.mkdir()
        replay = run_policies(
            trace,
            ("none",),
            cfg=MmuConfig(n_max_min=6, refill_pages=5),
            threads=threads,
            workdir=work,
            background=background,
        )
        assert len(replay.runs[0].result.sp_removals) > 20  # page-limit zaps between the rows
        docs.append(summarize(replay, replay.runs[0]))
    assert docs[1] == docs[0]
    assert docs[0]["totals"]["peak_sp_pages"] <= 2 * 6


def test_accesses_per_vcpu_skip_host_rows_whatever_their_slots_hold() -> None:
    """VM ids 7 and 3 (not 0..n-1, so packed through a table), 2 and 3 vCPUs. Host rows carry
    junk vm/vcpu values (Arrow leaves null slots unspecified); they must not count."""
    from replay.run.driver import _PerVcpu
    from replay.trace.schema import Memslot, VmSpec

    slot = (Memslot(0, 1 << 30, "4k", False),)
    vms = (VmSpec(7, "a", 2, "tdp_mmu", 4, slot), VmSpec(3, "b", 3, "tdp_mmu", 4, slot))
    rng = np.random.default_rng(5)
    n = 5000
    is_vm7 = rng.random(n) < 0.5
    vm = np.where(is_vm7, 7, 3).astype(np.uint16)
    vcpu = np.where(is_vm7, rng.integers(0, 2, n), rng.integers(0, 3, n)).astype(np.uint16)
    host = np.sort(rng.choice(n, 300, replace=False))
    vm[host] = rng.integers(0, 0x10000, len(host))
    vcpu[host] = rng.integers(0, 0x10000, len(host))
    counts = _PerVcpu(vms)
    counts.add(vm[:2000], vcpu[:2000], host[host < 2000])
    counts.add(vm[2000:], vcpu[2000:], host[host >= 2000] - 2000)
    keep = np.ones(n, dtype=bool)
    keep[host] = False
    want = {(v, c): 0 for v, k in ((7, 2), (3, 3)) for c in range(k)}
    for v, c in zip(vm[keep].tolist(), vcpu[keep].tolist(), strict=True):
        want[(v, c)] += 1
    assert counts.by_vcpu() == want
