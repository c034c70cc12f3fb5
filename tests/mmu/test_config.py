from __future__ import annotations

from pathlib import Path

import pytest

from replay.mmu.config import ConfigError, CostModel, MmuConfig, parse_policies


def test_defaults_are_the_spec() -> None:
    cfg = MmuConfig()
    assert (cfg.cache_capacity, cfg.min_shadow_page, cfg.min_pte_list_desc) == (40, 5, 14)
    assert (cfg.shrink_batch, cfg.seeks, cfg.pte_prefetch) == (128, 20, 8)
    assert cfg.n_max_mmu_pages(10_000) == 200
    assert cfg.n_max_mmu_pages(100) == 64
    c = CostModel()
    assert (
        c.fault_base_ns,
        c.sp_alloc_ns,
        c.refill_page_ns,
        c.refill_page_pressure_ns,
        c.pressure_window_ns,
        c.zap_flush_ns,
    ) == (2000, 300, 250, 2500, 10**9, 10_000)


@pytest.mark.parametrize("grp", [0, 6, 1024])
def test_a_prefetch_group_is_an_aligned_part_of_a_page_table(grp: int) -> None:
    """Rule 3e's group must be a power of 2 no larger than a PT's 512 entries."""
    with pytest.raises(ValueError, match="power of 2"):
        MmuConfig(pte_prefetch=grp)
    assert MmuConfig(pte_prefetch=1).pte_prefetch == 1
    assert MmuConfig(pte_prefetch=512).pte_prefetch == 512


def test_costs_from_toml(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("fault_base_ns = 5000\nzap_flush_ns = 1\n")
    c = CostModel.from_toml(path)
    assert (c.fault_base_ns, c.zap_flush_ns, c.sp_alloc_ns) == (5000, 1, 300)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("fault_bse_ns = 1\n", "unknown key 'fault_bse_ns'"),
        ("fault_base_ns = -1\n", "must be a whole number of ns >= 0"),
        ("fault_base_ns = 1.5\n", "must be a whole number"),
        ("fault_base_ns = \n", "not valid TOML"),
    ],
)
def test_bad_costs_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        CostModel.from_toml(path)


def test_missing_costs_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        CostModel.from_toml(tmp_path / "nope.toml")


def test_parse_policies() -> None:
    assert parse_policies("zap,none,cache") == ("zap", "none", "cache")
    assert parse_policies(" cache , zap,cache") == ("cache", "zap")
    with pytest.raises(ConfigError, match="unknown policy 'zapp'"):
        parse_policies("zapp")
    with pytest.raises(ConfigError, match="no policy"):
        parse_policies(",")
