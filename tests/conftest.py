"""pytest's fixtures and hypothesis profiles; the builders tests import are in ``builders.py``."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.builders import TINY_SCENARIO, write_rows

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from replay.trace.schema import TraceMeta
    from tests.builders import Row

settings.register_profile(
    "default", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def trace_builder(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1_000_000))

    def build(rows: list[Row], meta: TraceMeta | None = None) -> Path:
        return write_rows(tmp_path / f"t{next(counter)}.parquet", rows, meta)

    return build


@pytest.fixture
def scenario_file(tmp_path: Path) -> Callable[[str], Path]:
    def make(text: str = TINY_SCENARIO, name: str = "s.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return make


@pytest.fixture(scope="session")
def legacy_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``DIR/{zap,none,cache}`` of a 150,000-access legacy-mmu-pressure trace."""
    from replay.run.driver import run_policies
    from replay.run.outputs import write_runs
    from replay.synth import generate, load_scenario
    from replay.trace import open_trace

    root = tmp_path_factory.mktemp("legacy")
    trace = root / "legacy.parquet"
    generate(load_scenario("legacy-mmu-pressure", accesses=150_000), trace)
    replay = run_policies(open_trace(trace), ("zap", "none", "cache"), bucket_ns=50_000_000)
    write_runs(replay, root / "runs")
    return root / "runs"


@pytest.fixture(scope="session")
def other_trace_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zap run of the same scenario with another seed: a different trace."""
    from replay.run.driver import run_policies
    from replay.run.outputs import write_runs
    from replay.synth import generate, load_scenario
    from replay.trace import open_trace

    root = tmp_path_factory.mktemp("other")
    trace = root / "legacy-seed2.parquet"
    generate(load_scenario("legacy-mmu-pressure", accesses=150_000, seed=2), trace)
    write_runs(run_policies(open_trace(trace), ("zap",)), root / "runs")
    return root / "runs" / "zap"
