"""Comparisons of fleet outputs with ``replay run``'s."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

RUN_FILES = ("faults.parquet", "scans.parquet", "timeline.parquet", "vcpu_cache.parquet")


def replay(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """The real CLI in a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "replay", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        timeout=timeout,
        check=False,
    )


def comparable_summary(path: Path) -> dict[str, Any]:
    """A summary.json without what may differ: the timings and where the trace was read."""
    doc: dict[str, Any] = json.loads(path.read_text())
    doc.pop("wall_s")
    doc["trace"].pop("path")
    return doc


def assert_same_run(fleet_run: Path, plain_run: Path) -> None:
    """The run a fleet job wrote is the run replay run wrote: byte for byte, summary apart."""
    assert sorted(p.name for p in fleet_run.iterdir()) == sorted(
        p.name for p in plain_run.iterdir()
    )
    for name in RUN_FILES:
        assert (fleet_run / name).read_bytes() == (plain_run / name).read_bytes(), fleet_run / name
    assert comparable_summary(fleet_run / "summary.json") == comparable_summary(
        plain_run / "summary.json"
    )


def job_folders(fleet: Path) -> list[Path]:
    """Every job folder (runs/<trace>/<point>) of a fleet, sorted."""
    return sorted(p for p in (fleet / "runs").glob("*/*") if p.is_dir())


def assert_same_fleet_runs(a: Path, b: Path) -> None:
    """Two fleets hold the same jobs with the same runs."""
    jobs_a, jobs_b = job_folders(a), job_folders(b)
    assert [p.relative_to(a) for p in jobs_a] == [p.relative_to(b) for p in jobs_b]
    for ja, jb in zip(jobs_a, jobs_b, strict=True):
        for run in sorted(p for p in ja.iterdir() if p.is_dir()):
            assert_same_run(run, jb / run.name)


def no_leftovers(fleet: Path) -> list[Path]:
    """Temporary names left anywhere in a fleet folder (there must be none)."""
    return [p for p in fleet.rglob(".*") if p.name.endswith(".partial")]
