"""Shared walks (ENGINE.md, "Shared walks"): the policies that keep page tables, replayed by one
walk, write the runs each would write replayed alone.

``none`` and ``cache`` never touch a page table (rule 12; ``none`` has no shrinker), so one walk
finds the faults of both and only their caches, scans and rows are kept apart. These tests hold
that to the runs of each policy replayed on its own, file by file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from replay.mmu import lanes as lanes_module
from replay.mmu.config import KEEPS_PAGE_TABLES, CostModel, MmuConfig, shared_walks
from replay.mmu.engine import VectorEngine
from replay.run.driver import run_policies
from replay.run.outputs import write_runs
from replay.synth import generate, load_scenario
from replay.trace import open_trace
from replay.trace.reader import TraceFile
from replay.trace.schema import TraceMeta
from tests.builders import write_rows
from tests.mmu.helpers import meta
from tests.mmu.test_lanes import _outputs, _with_mmu, many_vm_traces


def _runs_alone_and_shared(trace: TraceFile, tmp: Path, **kw: Any) -> None:
    """Each policy alone, then all three in one replay: the same files, policy by policy."""
    alone: dict[str, bytes] = {}
    for policy in ("zap", "none", "cache"):
        write_runs(run_policies(trace, (policy,), **kw), tmp / f"alone-{policy}")
        alone |= _outputs(tmp / f"alone-{policy}")
    for order in (("zap", "none", "cache"), ("cache", "zap", "none")):
        folder = tmp / "-".join(order)
        write_runs(run_policies(trace, order, **kw), folder)
        assert _outputs(folder) == alone, order


@pytest.mark.parametrize(
    ("scenario", "mmu"),
    [
        ("many-small-vms", "shadow_direct"),  # the cache shrinker empties caches often
        ("tdp-host-pressure", "tdp_mmu"),
        ("dirty-log-perf-drop-caches", "shadow_direct"),
        ("host-swap", "shadow_direct"),  # unmap events, under every policy
    ],
)
def test_a_shared_walk_writes_the_runs_of_each_policy_alone(
    tmp_path: Path, scenario: str, mmu: str
) -> None:
    path = tmp_path / "t.parquet"
    duration = 2.0 if scenario == "host-swap" else None
    generate(load_scenario(scenario, seed=9, accesses=10_000, duration_s=duration), path)
    _runs_alone_and_shared(_with_mmu(open_trace(path), mmu), tmp_path, threads=1)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(many_vm_traces(), st.sampled_from([1, 3]))
def test_generated_traces_give_each_policy_its_own_runs(
    tmp_path_factory: pytest.TempPathFactory,
    drawn: tuple[TraceMeta, list[dict[str, Any]], MmuConfig],
    lanes: int,
) -> None:
    """Many VMs, frequent reclaim, shrink, unmap and zap_all events, small page limits; the walk
    on one thread or split between lanes."""
    meta, rows, cfg = drawn
    assume(any(row["event"] == "access" for row in rows))  # else every replay is refused
    tmp = tmp_path_factory.mktemp("walks")
    trace = open_trace(write_rows(tmp / "t.parquet", rows, meta))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lanes_module, "MIN_SPLIT", 0)
        _runs_alone_and_shared(trace, tmp, cfg=cfg, threads=lanes * 2)  # two walks


def test_only_the_policies_that_keep_page_tables_share_a_walk() -> None:
    assert sorted(KEEPS_PAGE_TABLES) == ["cache", "none"]
    assert shared_walks(("zap", "none", "cache")) == [(0,), (1, 2)]
    assert shared_walks(("cache", "zap", "none")) == [(0, 2), (1,)]
    assert shared_walks(("zap",)) == [(0,)]
    with pytest.raises(ValueError, match="cannot share a walk"):
        VectorEngine(meta(), "zap", MmuConfig(), CostModel(), companions=[("cache", None)])


def test_a_policy_given_twice_gets_a_run_of_its_own(tmp_path: Path) -> None:
    """The library takes a policy twice (the command drops repeats): each is a companion of the
    walk with its own account, so the two runs are equal and neither is the other's."""
    path = tmp_path / "t.parquet"
    generate(load_scenario("many-small-vms", seed=2, accesses=5_000), path)
    replay = run_policies(open_trace(path), ("none", "cache", "cache"))
    _, first, second = replay.runs
    assert first.sink is not second.sink
    assert first.stats is not second.stats
    assert len(first.result.faults["row"]) > 0
    for k, column in first.result.faults.items():
        assert (column == second.result.faults[k]).all(), k
    assert first.result.scans == second.result.scans
    assert first.result.cache_frees == second.result.cache_frees
