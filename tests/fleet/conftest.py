"""Fleet fixtures: six small traces of different scenarios and seeds, and a reference fleet."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from replay.synth import generate, load_scenario

if TYPE_CHECKING:
    from pathlib import Path

SCENARIOS = (
    ("quick", 1),
    ("quick", 2),
    ("many-small-vms", 1),
    ("legacy-mmu-pressure", 1),
    ("tdp-host-pressure", 2),
    ("huge-pages", 1),
)
ACCESSES = 20_000
SWEEP = ("--sweep", "cache_capacity=20,40")


@pytest.fixture(scope="session")
def traces(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of six traces, two of them in a subfolder (folders are searched recursively)."""
    root = tmp_path_factory.mktemp("traces")
    for i, (name, seed) in enumerate(SCENARIOS):
        folder = root / "more" if i >= 4 else root
        folder.mkdir(exist_ok=True)
        generate(
            load_scenario(name, seed=seed, accesses=ACCESSES), folder / f"{name}-{seed}.parquet"
        )
    return root


@pytest.fixture(scope="session")
def plain_runs(traces: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A plain loop of replay run over the traces (default model: cache_capacity 40)."""
    from tests.fleet.helpers import replay

    out = tmp_path_factory.mktemp("plain")
    runs = {}
    for trace in sorted(traces.rglob("*.parquet")):
        proc = replay("run", str(trace), "-o", str(out / trace.stem))
        assert proc.returncode == 0, proc.stderr
        runs[trace.stem] = out / trace.stem
    return runs


@pytest.fixture(scope="session")
def inprocess_fleet(traces: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The six traces at two sweep points, run in one process."""
    from tests.fleet.helpers import replay

    out = tmp_path_factory.mktemp("fleet") / "inprocess"
    proc = replay("fleet", str(traces), "-o", str(out), "--scheduler", "inprocess", *SWEEP)
    assert proc.returncode == 0, proc.stderr
    return out
