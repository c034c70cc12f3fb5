"""Fixtures of the hostile tests: sandboxes, and inputs made once per session with the tool."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.hostile.inputs import trace_bytes
from tests.hostile.runner import Sandbox

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[Sandbox]:
    """A fresh folder for one test's commands."""
    with Sandbox(tmp_path) as box:
        yield box


@pytest.fixture(scope="session")
def hostile_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where property tests make one sandbox per example (hypothesis runs many in one test)."""
    return tmp_path_factory.mktemp("hostile")


@pytest.fixture(scope="session")
def made(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A session sandbox holding inputs made once, with the tool itself."""
    with Sandbox(tmp_path_factory.mktemp("made")) as box:
        yield box


@pytest.fixture(scope="session")
def small_trace(made: Sandbox) -> Path:
    """A 4,018-row trace cut from the bundled sample (every host event, every 50th access)."""
    path = made.put("small.parquet", trace_bytes())
    made.run("inspect", "small.parquet")
    return path


@pytest.fixture(scope="session")
def small_runs(made: Sandbox, small_trace: Path) -> Path:
    """``runs/{zap,none,cache}`` of :func:`small_trace`, written by ``replay run``."""
    made.run("run", small_trace.name, "-o", "runs", outputs={"runs": "runs"})
    return made.path / "runs"
