"""`replay diff` as a user runs it: the views, exit codes, and bad input."""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING

import pyarrow.parquet as pq

from tests.integration.test_cli import assert_user_error, replay

if TYPE_CHECKING:
    from pathlib import Path


def test_diff_of_a_run_with_itself_shows_no_change(legacy_runs: Path) -> None:
    zap = str(legacy_runs / "zap")
    proc = replay("diff", zap, zap, "--fail-on", "faults>0")
    assert proc.returncode == 0, proc.stderr
    assert "no total changed" in proc.stdout
    assert "0 only in A, 0 only in B, 0 attributed differently" in proc.stdout
    assert "fail-on faults>0: change 0 (same): ok" in proc.stdout


def test_diff_leads_with_zapped_page_tables(legacy_runs: Path, tmp_path: Path) -> None:
    out = tmp_path / "changed.parquet"
    proc = replay("diff", str(legacy_runs / "none"), str(legacy_runs / "zap"), "--faults", str(out))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("A: ")
    assert lines[1].startswith("B: ")
    assert lines[2].startswith("faults ")
    assert "zapped page tables 0 -> " in lines[2]
    table_rows = [line for line in lines if line.startswith("│")]
    assert "faults_by_attribution.zapped_page_tables" in table_rows[1]  # after the transitions
    assert "Per VM" in proc.stdout
    assert f"wrote {out}" in proc.stderr
    changed = pq.read_table(out)
    assert set(changed.column("change").to_pylist()) <= {"only_b", "detail_changed"}


def test_diff_json_and_markdown(legacy_runs: Path) -> None:
    args = (str(legacy_runs / "zap"), str(legacy_runs / "cache"))
    proc = replay("diff", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1
    assert doc["command"] == "diff"
    assert doc["same_trace"] is True
    assert doc["a"]["policy"] == "zap"
    assert doc["b"]["policy"] == "cache"
    assert doc["config_changes"] == [{"key": "policy", "a": "zap", "b": "cache"}]
    metrics = {(r["scope"], r["metric"]) for r in doc["rows"]}
    assert ("total", "faults_by_attribution.cache_eviction") in metrics
    assert ("vm 0", "faults") in metrics
    proc = replay("diff", *args, "--markdown")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("## replay diff")
    assert "| metric | A | B | change | relative |  |" in proc.stdout
    assert "### Per VM" in proc.stdout


def test_fail_on_exits_4_when_crossed(legacy_runs: Path) -> None:
    args = (str(legacy_runs / "none"), str(legacy_runs / "zap"))
    proc = replay("diff", *args, "--fail-on", "faults_by_attribution.zapped_page_tables>0")
    assert proc.returncode == 4, proc.stderr
    assert "CROSSED" in proc.stdout
    assert "exit 4" in proc.stderr
    proc = replay("diff", *args, "--json", "--fail-on", "faults<0", "--fail-on", "hits>0")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert [t["crossed"] for t in doc["fail_on"]] == [False, False]


def test_bad_input(legacy_runs: Path, other_trace_run: Path, tmp_path: Path) -> None:
    zap = str(legacy_runs / "zap")
    assert_user_error(replay("diff", str(tmp_path), zap), "not a run")
    assert_user_error(replay("diff", str(legacy_runs), zap), "holds runs", "zap")
    newer = tmp_path / "newer"
    shutil.copytree(legacy_runs / "zap", newer)
    doc = json.loads((newer / "summary.json").read_text())
    doc["schema_version"] = 7
    (newer / "summary.json").write_text(json.dumps(doc))
    assert_user_error(replay("diff", zap, str(newer)), "v7", "upgrade")
    assert_user_error(replay("diff", zap, str(other_trace_run)), "different traces", "--force")
    assert_user_error(replay("diff", zap, zap, "--fail-on", "fualts>1"), "did you mean faults")
    assert_user_error(replay("diff", zap, zap, "--fail-on", "faults"), "METRIC>LIMIT")
    assert_user_error(
        replay("diff", zap, zap, "--faults", str(tmp_path / "no" / "x.parquet")), "does not exist"
    )
    proc = replay("diff", zap, str(other_trace_run), "--force")
    assert proc.returncode == 0, proc.stderr
    assert "DIFFERENT traces" in proc.stdout
