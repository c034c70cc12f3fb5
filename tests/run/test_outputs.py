from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq
import pytest

from replay.errors import OutputPathError, TraceDataError
from replay.run.driver import run_policies
from replay.run.outputs import write_runs
from replay.run.schema import RUN_KEY
from replay.synth import generate, load_scenario
from replay.trace import open_trace
from tests.builders import reclaim, write_rows


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("t") / "quick.parquet"
    generate(load_scenario("quick", accesses=20_000), path)
    return path


def test_run_directory_holds_every_output(quick: Path, tmp_path: Path) -> None:
    replay = run_policies(open_trace(quick), ("zap", "cache"))
    docs = write_runs(replay, tmp_path / "runs")
    assert [d["policy"] for d in docs] == ["zap", "cache"]
    for policy in ("zap", "cache"):
        run = tmp_path / "runs" / policy
        assert sorted(p.name for p in run.iterdir()) == [
            "faults.parquet",
            "scans.parquet",
            "summary.json",
            "timeline.parquet",
            "vcpu_cache.parquet",
        ]
        for name in ("faults.parquet", "scans.parquet", "timeline.parquet", "vcpu_cache.parquet"):
            stamp = json.loads(pq.read_metadata(run / name).metadata[RUN_KEY.encode()])
            assert stamp["schema_version"] == 1
            assert stamp["policy"] == policy
        summary = json.loads((run / "summary.json").read_text())
        for key in (
            "schema_version",
            "policy",
            "engine",
            "wall_s",
            "trace",
            "config",
            "totals",
            "per_vm",
            "per_vcpu",
        ):
            assert key in summary
        for key in (
            "faults_by_attribution",
            "faults_by_cause",
            "refills_by_kind",
            "pages_refilled",
            "sps_allocated",
            "sps_relinked",
            "pages_freed",
            "scan_calls",
            "reclaim_passes_by_source",
            "peak_sp_pages",
            "peak_cache_pages",
            "stall_ns_by_attribution",
            "stall_per_freed_page",
        ):
            assert key in summary["totals"]
        faults = pq.read_table(run / "faults.parquet")
        assert faults.num_rows == summary["totals"]["faults"]
        assert sum(summary["totals"]["faults_by_cause"].values()) == faults.num_rows
        timeline = pq.read_table(run / "timeline.parquet")
        assert sum(timeline.column("faults").to_pylist()) == faults.num_rows
        assert sum(timeline.column("accesses").to_pylist()) == 20_000
        assert summary["config"]["costs_are_estimates"] is True
        _check_vcpu_cache(run, summary, timeline)


def _check_vcpu_cache(run: Path, summary: dict[str, Any], timeline: Any) -> None:
    """Per-vCPU levels, forward-filled and summed, give the timeline's total at every bucket."""
    levels = pl.read_parquet(run / "vcpu_cache.parquet")
    assert levels.columns == ["t_start_ns", "vm", "vcpu", "cache_pages"]
    assert int(levels["cache_pages"].min()) >= 0  # type: ignore[arg-type]
    t = pl.DataFrame({"t_start_ns": timeline.column("t_start_ns").to_numpy()})
    total = None
    for (vm, vcpu), rows in levels.group_by(["vm", "vcpu"], maintain_order=True):
        assert rows["t_start_ns"].is_sorted()
        filled = t.join_asof(rows.select("t_start_ns", "cache_pages"), on="t_start_ns")
        level = filled["cache_pages"].fill_null(0).to_numpy()
        assert level.max() <= summary["per_vcpu"][f"{vm}/{vcpu}"]["peak_cache_pages"]
        total = level if total is None else total + level
    assert total is not None
    assert total.tolist() == timeline.column("cache_pages").to_pylist()


def test_per_vm_and_per_vcpu_add_up(quick: Path, tmp_path: Path) -> None:
    replay = run_policies(open_trace(quick), ("zap",))
    (doc,) = write_runs(replay, tmp_path / "r")
    totals = doc["totals"]
    assert sum(v["faults"] for v in doc["per_vm"].values()) == totals["faults"]
    assert sum(v["faults"] for v in doc["per_vcpu"].values()) == totals["faults"]
    assert sum(v["pages_freed"] for v in doc["per_vm"].values()) == totals["pages_freed"]
    assert totals["hits"] + totals["faults"] == totals["accesses"]


def test_existing_run_needs_force(quick: Path, tmp_path: Path) -> None:
    replay = run_policies(open_trace(quick), ("none",))
    write_runs(replay, tmp_path / "r")
    with pytest.raises(OutputPathError, match="pass --force"):
        write_runs(replay, tmp_path / "r")
    write_runs(replay, tmp_path / "r", force=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]


def test_failure_leaves_no_run_directory(
    quick: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import replay.run.outputs as outputs

    replay = run_policies(open_trace(quick), ("zap", "none"))

    def boom(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(outputs, "summarize_with_timeline", boom)
    with pytest.raises(KeyboardInterrupt):
        write_runs(replay, tmp_path / "runs")
    assert list(tmp_path.iterdir()) == []


def test_trace_with_only_pressure_is_refused(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "p.parquet", [reclaim(1), reclaim(2)])
    with pytest.raises(TraceDataError, match="no access events"):
        run_policies(open_trace(path), ("zap",))


def test_empty_trace_is_refused(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "e.parquet", [])
    with pytest.raises(TraceDataError, match="has no events"):
        run_policies(open_trace(path), ("zap",))


def test_runs_are_deterministic(quick: Path, tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_runs(run_policies(open_trace(quick), ("zap",)), tmp_path / name)
    a = (tmp_path / "a" / "zap" / "faults.parquet").read_bytes()
    assert a == (tmp_path / "b" / "zap" / "faults.parquet").read_bytes()
