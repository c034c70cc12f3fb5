"""Sweeps, model files and the grid of sweep points."""

from __future__ import annotations

from pathlib import Path

import pytest

from replay.fleet.settings import grid, parse_sweep
from replay.mmu.config import ConfigError, CostModel, MmuConfig


def test_a_sweep_over_a_constant_and_one_over_a_cost() -> None:
    s = parse_sweep("cache_capacity=20,40,1_00")
    assert (s.key, s.values, s.is_cost) == ("cache_capacity", (20, 40, 100), False)
    c = parse_sweep("costs.refill_page_pressure_ns=1000,2500")
    assert c.is_cost
    assert c.values == (1000, 2500)


def test_several_sweeps_make_a_grid_first_slowest() -> None:
    points = grid(
        (parse_sweep("shrink_batch=64,128"), parse_sweep("costs.zap_flush_ns=0,5")),
        MmuConfig(),
        CostModel(),
    )
    assert [p.id for p in points] == [
        "shrink_batch=64+costs.zap_flush_ns=0",
        "shrink_batch=64+costs.zap_flush_ns=5",
        "shrink_batch=128+costs.zap_flush_ns=0",
        "shrink_batch=128+costs.zap_flush_ns=5",
    ]
    assert points[1].cfg.shrink_batch == 64
    assert points[1].costs.zap_flush_ns == 5
    assert points[1].costs.fault_base_ns == CostModel().fault_base_ns


def test_no_sweep_is_one_default_point_over_the_base_configuration() -> None:
    base = MmuConfig(cache_capacity=20)
    (point,) = grid((), base, CostModel())
    assert point.id == "default"
    assert point.cfg == base


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("cache_size=1,2", "unknown sweep key 'cache_size'"),
        ("fault_base_ns=1,2", "costs.fault_base_ns"),
        ("costs.nope=1", "unknown cost estimate 'costs.nope'"),
        ("seeks=2,x", "value 'x' of seeks is not a whole number"),
        ("seeks=2.5", "not a whole number"),
        ("seeks=0", "seeks = 0 is out of range; it must be 1.."),
        ("pte_prefetch=6", "power of 2"),
        ("min_shadow_page=50", "is more than cache_capacity = 40"),
        ("seeks", "write KEY=V1,V2"),
        ("seeks=2,2", "given twice"),
        ("costs.zap_flush_ns=-1", "costs.zap_flush_ns = -1 is out of range; it must be 0.."),
    ],
)
def test_bad_sweeps_say_what_and_how(text: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match="--sweep") as err:
        parse_sweep(text)
    assert fragment in str(err.value)


def test_the_same_key_twice_is_refused() -> None:
    with pytest.raises(ConfigError, match="given twice"):
        grid((parse_sweep("seeks=2"), parse_sweep("seeks=20")), MmuConfig(), CostModel())


def test_a_swept_point_is_what_a_model_file_of_its_values_gives(tmp_path: Path) -> None:
    """replay run --model replays any point alone: the point's constants are the file's."""
    base = MmuConfig.from_toml(_write(tmp_path / "base.toml", "seeks = 2\n"))
    (point,) = grid((parse_sweep("cache_capacity=20"),), base, CostModel())
    alone = MmuConfig.from_toml(_write(tmp_path / "p.toml", "seeks = 2\ncache_capacity = 20\n"))
    assert point.cfg == alone


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path
