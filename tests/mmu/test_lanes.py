"""Parallel replay (issue 16): any number of threads gives the rows of one thread.

An epoch's VMs split between lanes (``replay.mmu.lanes``) and the policies run side by side
(``replay.run.driver``); every answer must be the one-thread answer: fault rows, scan rows,
page-limit and scan logs, deferred work, and every file a run writes (timings aside).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.mmu import lanes
from replay.mmu.config import POLICIES, CostModel, MmuConfig
from replay.mmu.engine import VectorEngine
from replay.mmu.results import EngineResult
from replay.run.driver import run_policies
from replay.run.outputs import write_runs
from replay.synth import generate, list_scenarios, load_scenario
from replay.trace import open_trace
from replay.trace.reader import TraceFile
from replay.trace.schema import Memslot, TraceMeta, VmSpec
from tests.mmu.helpers import A, R, S, U, Z, batch

if TYPE_CHECKING:
    from collections.abc import Callable

PAGE = 4096
THREADS = (2, 3, 8)


@st.composite
def many_vm_traces(draw: st.DrawFn) -> tuple[TraceMeta, list[dict[str, Any]], MmuConfig]:
    """Traces of up to a dozen VMs (more than lanes, and fewer) with frequent host events."""
    mode = draw(st.sampled_from(["tdp_mmu", "shadow_direct", None]))  # None: mixed
    vms = []
    for i in range(draw(st.integers(2, 12))):
        backing = draw(st.sampled_from(["4k", "4k", "2m"]))
        gfn = draw(st.integers(0, 700))
        slots = (Memslot(gfn * PAGE, draw(st.integers(1, 2500)) * PAGE, backing, False),)
        vm_mode = mode or draw(st.sampled_from(["tdp_mmu", "shadow_direct"]))
        vms.append(VmSpec(i * 5 + 1, f"vm{i}", draw(st.integers(1, 3)), vm_mode, 4, slots))
    meta = TraceMeta(vms=tuple(vms), coverage="all-accesses", provenance={})
    rows: list[dict[str, Any]] = []
    t = 0
    host_every = draw(st.sampled_from([3, 10, 40]))
    for _ in range(draw(st.integers(1, 300))):
        t += draw(st.sampled_from([0, 1, 700, 40_000, 3_000_000]))
        v = draw(st.sampled_from(vms))
        if draw(st.integers(0, host_every)) == 0:
            kind = draw(st.sampled_from(["reclaim", "reclaim", "shrink", "unmap", "zap_all"]))
        else:
            kind = "access"
        slot = v.memslots[0]
        if kind == "access":
            if draw(st.integers(0, 40)) == 0:
                gfn = (slot.gpa_end >> 12) + draw(st.integers(0, 3))  # MMIO
            else:
                gfn = slot.gfn_start + draw(st.integers(0, slot.npages - 1)) % 64
            rows.append(A(t, gfn, v.id, draw(st.integers(0, v.vcpus - 1))))
        elif kind == "reclaim":
            source = draw(st.sampled_from(["kswapd", "direct", "drop_caches", "memcg"]))
            rows.append(R(t, source, draw(st.integers(0, 12))))
        elif kind == "shrink":
            rows.append(S(t, draw(st.sampled_from([1, 3, 20, 128]))))
        elif kind == "unmap":
            start = slot.gpa_start + draw(st.integers(0, slot.size - 1))
            rows.append(U(t, start, draw(st.sampled_from([4096, 9000, 2 << 20])), v.id))
        else:
            rows.append(Z(t, v.id))
    # Small page limits: rule 13's zaps fall inside the lanes' epochs.
    cfg = MmuConfig(n_max_min=draw(st.sampled_from([6, 9, 64])), refill_pages=5)
    return meta, rows, cfg


def _replay(
    meta: TraceMeta, rows: list[dict[str, Any]], policy: str, cfg: MmuConfig, threads: int
) -> EngineResult:
    engine = VectorEngine(meta, policy, cfg, CostModel(), threads=threads)  # type: ignore[arg-type]
    split = len(rows) // 2
    engine.feed(batch(rows[:split]))
    engine.feed(batch(rows[split:], start_row=split))
    return engine.finish()


def _assert_same(one: EngineResult, other: EngineResult, what: object) -> None:
    for k in one.faults:
        assert np.array_equal(one.faults[k], other.faults[k]), (what, k)
        assert one.faults[k].dtype == other.faults[k].dtype, (what, k)
    assert one.scans == other.scans, what
    assert one.sp_removals == other.sp_removals, what  # in the same order, not just the same
    assert one.cache_frees == other.cache_frees, what
    assert one.nr_deferred == other.nr_deferred, what


@settings(max_examples=60, deadline=None)
@given(many_vm_traces(), st.sampled_from(POLICIES), st.sampled_from([1, 2, 7, 1 << 18]))
def test_lanes_give_the_rows_of_one_thread(
    drawn: tuple[TraceMeta, list[dict[str, Any]], MmuConfig], policy: str, step: int
) -> None:
    """Every epoch split (no minimum length), in steps of any size, 2, 3 and 8 lanes."""
    meta, rows, cfg = drawn
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lanes, "MIN_SPLIT", 0)
        mp.setattr(VectorEngine, "_EPOCH_MAX", step)
        one = _replay(meta, rows, policy, cfg, 1)
        for threads in THREADS:
            _assert_same(one, _replay(meta, rows, policy, cfg, threads), threads)


def test_lanes_are_used_and_stopped() -> None:
    """The split happens (rows come back through the join), and finish stops the threads."""
    meta = TraceMeta(
        vms=tuple(
            VmSpec(i, f"vm{i}", 1, "shadow_direct", 4, (Memslot(0, 64 * PAGE, "4k", False),))
            for i in range(4)
        ),
        coverage="all-accesses",
        provenance={},
    )
    rows = [A(t, t % 64, t % 4) for t in range(400)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lanes, "MIN_SPLIT", 0)
        engine = VectorEngine(meta, "zap", MmuConfig(), CostModel(), threads=3)
        assert engine.lanes is not None
        assert engine.lanes.n == 3
        engine.feed(batch(rows))
        pool = engine.lanes._pool
        assert pool is not None  # the epoch went to the lanes
        result = engine.finish()
    assert engine.lanes._pool is None
    assert all(not t.is_alive() for t in pool._threads)
    # 4 VMs x 64 gfns, one fault per prefetch group of 8: 32 faults, in trace order.
    assert len(result.faults["row"]) == 32
    assert np.all(np.diff(result.faults["row"]) > 0)


def test_the_reference_engine_on_several_threads(tmp_path: Path) -> None:
    """The policies side by side also with the scalar engine: the same rows as one thread."""
    path = tmp_path / "t.parquet"
    generate(load_scenario("many-small-vms", seed=2, accesses=3_000), path)
    trace = open_trace(path)
    one, three = (run_policies(trace, POLICIES, engine="reference", threads=n) for n in (1, 3))
    for a, b in zip(one.runs, three.runs, strict=True):
        _assert_same(a.result, b.result, a.policy)
        assert len(a.result.faults["row"]) > 100


def _with_mmu(trace: TraceFile, mmu: str) -> TraceFile:
    meta = trace.meta
    vms = tuple(replace(vm, mmu_mode=mmu) for vm in meta.vms)
    return replace(
        trace,
        meta=TraceMeta(vms, meta.coverage, meta.provenance, meta.observed, meta.schema_version),
    )


def _outputs(folder: Path) -> dict[str, bytes]:
    """Every file of a runs folder, summary.json without its timing (``wall_s``)."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "summary.json":
            doc = json.loads(data)
            doc.pop("wall_s", None)
            data = json.dumps(doc, sort_keys=True).encode()
        out[str(path.relative_to(folder))] = data
    return out


@pytest.mark.parametrize("scenario", list_scenarios())
@pytest.mark.parametrize("mmu", ["tdp_mmu", "shadow_direct"])
def test_every_scenario_writes_the_same_runs_whatever_the_threads(
    tmp_path: Path,
    scenario: str,
    mmu: str,
    one_thread_runs: Callable[[str, str], tuple[TraceFile, dict[str, bytes]]],
) -> None:
    """Every shipped scenario, every policy, both MMU modes, 1, 2, 3 and 8 threads and the
    default: the same bytes in every file of the runs (faults, scans, timelines, cache levels,
    summary). The one-thread runs are tests/conftest.py's ``one_thread_runs``, which
    tests/run/test_procs.py holds its processes to as well."""
    trace, one = one_thread_runs(scenario, mmu)
    assert len(one) >= 3 * 4
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lanes, "MIN_SPLIT", 0)
        for threads in (*THREADS, None):  # None: replay run's default (policies side by side)
            work = tmp_path / f"work{threads}"
            work.mkdir()
            replay = run_policies(trace, POLICIES, workdir=work, threads=threads)
            write_runs(replay, tmp_path / f"runs{threads}")
            outputs = _outputs(tmp_path / f"runs{threads}")
            assert outputs.keys() == one.keys()
            for name, data in one.items():
                assert outputs[name] == data, (threads, name)
