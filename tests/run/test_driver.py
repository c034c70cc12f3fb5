"""The driver's own checks, as a Python caller meets them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from replay.errors import ReplayError

if TYPE_CHECKING:
    from pathlib import Path


def test_make_engine_refuses_an_unknown_engine(tmp_path: Path) -> None:
    from replay.mmu.config import CostModel, MmuConfig
    from replay.run.driver import make_engine
    from replay.synth import generate, load_scenario
    from replay.trace import open_trace

    path = tmp_path / "q.parquet"
    generate(load_scenario("quick", accesses=100), path)
    with pytest.raises(ReplayError, match="unknown engine 'gpu'; use fast or reference"):
        make_engine("gpu", open_trace(path), "zap", MmuConfig(), CostModel())  # type: ignore[arg-type]
