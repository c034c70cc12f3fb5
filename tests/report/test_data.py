"""What the report plots is the runs' data, reduced without losing counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest

import replay.report.data as data
from replay.report.data import BUSIEST_VCPUS, expand, load_series
from replay.report.html import headline
from replay.report.plots import shrinker_stall_ns
from replay.run.load import load_run

if TYPE_CHECKING:
    from pathlib import Path


def test_merging_buckets_keeps_counts_and_takes_last_levels() -> None:
    timeline = {
        "t_start_ns": np.arange(5) * 10,
        "faults": np.array([1, 2, 3, 4, 5]),
        "sp_pages": np.array([7, 8, 9, 6, 5]),
        "cache_pages": np.array([0, 1, 2, 3, 4]),
    }
    merged = data._merge(timeline, 2)
    assert merged["t_start_ns"].tolist() == [0, 20, 40]
    assert merged["faults"].tolist() == [3, 7, 5]
    assert merged["sp_pages"].tolist() == [8, 6, 5]
    assert merged["cache_pages"].tolist() == [1, 3, 4]


def test_series_hold_every_fault_and_scan(legacy_runs: Path) -> None:
    for run in expand([legacy_runs]):
        s = load_series(run)
        totals = run.summary["totals"]
        assert int(s.cost_counts.sum()) == totals["faults"]
        assert int(s.timeline["faults"].sum()) == totals["faults"]
        assert len(s.scan_t_s) == totals["scan_calls"]
        assert int(s.scan_freed.sum()) == totals["pages_freed"]
        assert len(s.vcpu_cache) == min(BUSIEST_VCPUS, len(run.summary["per_vcpu"]))
        for _, t, level in s.vcpu_cache:
            assert np.all(np.diff(t) > 0)
            assert level.max(initial=0) <= totals["peak_cache_pages"]
    assert [r.policy for r in expand([legacy_runs])] == ["zap", "none", "cache"]


def test_long_timelines_are_merged(legacy_runs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = load_run(legacy_runs / "zap")
    full = load_series(run)
    monkeypatch.setattr(data, "MAX_BUCKETS", 4)
    short = load_series(run)
    assert len(short.timeline["t_start_ns"]) <= 4
    assert short.bucket_ns > full.bucket_ns
    assert int(short.timeline["faults"].sum()) == int(full.timeline["faults"].sum())
    assert short.timeline["sp_pages"][-1] == full.timeline["sp_pages"][-1]


def test_headline_states_freed_pages_and_stall(legacy_runs: Path) -> None:
    zap = load_series(load_run(legacy_runs / "zap"))
    t = zap.totals
    text = headline(zap)
    assert f"freed {t['pages_freed']:,} pages" in text
    assert f"est. {shrinker_stall_ns(t) / 1e6:,.1f} ms" in text
    stall = t["stall_ns_by_attribution"]
    assert shrinker_stall_ns(t) == (
        stall["zapped_page_tables"] + stall["cache_eviction"] + t["scan_flush_ns"]
    )
