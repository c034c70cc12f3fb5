"""What a KVM developer should see on the shipped scenarios (issue: faithful behaviour)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from replay.mmu.config import Attribution, Refill
from replay.run.driver import run_policies
from replay.synth import generate, load_scenario
from replay.trace import open_trace


def _replay(name: str, tmp_path: Path, accesses: int = 60_000):  # type: ignore[no-untyped-def]
    path = tmp_path / f"{name}.parquet"
    generate(load_scenario(name, accesses=accesses), path)
    return {
        run.policy: run.result
        for run in run_policies(open_trace(path), ("zap", "none", "cache")).runs
    }


def _keys(faults: dict[str, np.ndarray]) -> set[tuple[int, int, int, int]]:
    return set(
        zip(
            faults["t_ns"].tolist(),
            faults["vm"].tolist(),
            faults["vcpu"].tolist(),
            faults["gfn"].tolist(),
            strict=True,
        )
    )


def test_old_shrinker_never_touched_tdp_mmu_page_tables(tmp_path: Path) -> None:
    runs = _replay("tdp-host-pressure", tmp_path)
    zap = runs["zap"]
    assert sum(s.freed for s in zap.scans) == 0
    assert not (zap.faults["attribution"] == Attribution.ZAPPED_PAGE_TABLES).any()


def test_legacy_mmu_is_zapped_and_refaults(tmp_path: Path) -> None:
    runs = _replay("legacy-mmu-pressure", tmp_path)
    zap = runs["zap"]
    assert sum(s.freed for s in zap.scans) > 0
    assert (zap.faults["attribution"] == Attribution.ZAPPED_PAGE_TABLES).sum() > 0
    assert len(zap.faults["row"]) > len(runs["none"].faults["row"])


@pytest.mark.parametrize("name", ["legacy-mmu-pressure", "many-small-vms", "quick"])
def test_cache_faults_where_none_does_and_adds_only_refills(name: str, tmp_path: Path) -> None:
    runs = _replay(name, tmp_path)
    cache, none = runs["cache"].faults, runs["none"].faults
    assert _keys(cache) == _keys(none)
    # Same faults, same causes and page-table work: the cache policy only changes refills
    # (and with them the estimated cost and the attribution cache_eviction).
    for column in ("row", "cause", "leaf_level", "new_sps", "relinked_sps", "recycled_sps"):
        assert np.array_equal(cache[column], none[column]), column
    assert not (none["refill"] == Refill.SHRINKER).any()
    shrinker = cache["refill"] == Refill.SHRINKER
    assert np.array_equal(shrinker, cache["attribution"] == Attribution.CACHE_EVICTION)
    assert not (cache["attribution"] == Attribution.ZAPPED_PAGE_TABLES).any()
    assert runs["none"].scans == []


def test_cache_eviction_shows_on_many_small_vms(tmp_path: Path) -> None:
    runs = _replay("many-small-vms", tmp_path)
    cache = runs["cache"]
    assert sum(s.freed for s in cache.scans) > 0
    assert (cache.faults["attribution"] == Attribution.CACHE_EVICTION).sum() > 0
