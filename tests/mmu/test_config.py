from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from replay.mmu.config import (
    COST_MAX_NS,
    MODEL_RANGES,
    ConfigError,
    CostModel,
    MmuConfig,
    parse_policies,
)


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
        ("fault_base_ns = -1\n", r"fault_base_ns = -1 is out of range; it must be 0\.\.1000000000"),
        ("fault_base_ns = 1.5\n", "fault_base_ns must be a whole number, not 1.5"),
        ("zap_flush_ns = 1000000001\n", "zap_flush_ns = 1000000001 is out of range"),
        ("fault_base_ns = \n", "not valid TOML: Invalid value at line 1, column 17"),
    ],
)
def test_bad_costs_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        CostModel.from_toml(path)


def test_costs_keep_one_faults_estimate_within_64_bits(tmp_path: Path) -> None:
    """Rule 18's estimate of a fault with every cost at its limit still fits an int64."""
    path = tmp_path / "c.toml"
    path.write_text(
        "\n".join(f"{k} = {COST_MAX_NS}" for k in ("fault_base_ns", "sp_alloc_ns"))
        + f"\nrefill_page_pressure_ns = {COST_MAX_NS}\nzap_flush_ns = {COST_MAX_NS}\n"
        + f"pressure_window_ns = {2**63 - 1}\n"
    )
    c = CostModel.from_toml(path)
    largest_sps, largest_pages = 2**15 - 1, MODEL_RANGES["cache_capacity"][1]
    worst = (
        c.fault_base_ns
        + c.sp_alloc_ns * largest_sps
        + c.refill_page_pressure_ns * largest_pages
        + c.zap_flush_ns
    )
    assert worst < 2**63
    assert c.pressure_window_ns == 2**63 - 1


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


def test_model_file_overrides_the_constants(tmp_path: Path) -> None:
    path = tmp_path / "model.toml"
    path.write_text(
        "cache_capacity = 64\nseeks = 2\npte_prefetch = 4\nn_max_divisor = 1099511627776\n"
    )
    cfg = MmuConfig.from_toml(path)
    assert cfg == MmuConfig(cache_capacity=64, seeks=2, pte_prefetch=4, n_max_divisor=1 << 40)
    path.write_text("")
    assert MmuConfig.from_toml(path) == MmuConfig()


def test_model_ranges_name_every_constant() -> None:
    assert set(MODEL_RANGES) == {f.name for f in fields(MmuConfig)}
    defaults = MmuConfig()
    for name, (lo, hi) in MODEL_RANGES.items():
        assert lo <= getattr(defaults, name) <= hi, name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cache_capasity = 4\n", "unknown key 'cache_capasity'; did you mean 'cache_capacity'"),
        ("seeks = 0\n", r"seeks = 0 is out of range; it must be 1\.\.2147483647"),
        ("shrink_batch = 0\n", "shrink_batch = 0 is out of range"),
        ("n_max_divisor = 0\n", "n_max_divisor = 0 is out of range; it must be >= 1"),
        ("min_shadow_page = 4\n", "min_shadow_page = 4 is out of range"),
        ("cache_capacity = 4.0\n", "cache_capacity must be a whole number, not 4.0"),
        ("cache_capacity = true\n", "cache_capacity must be a whole number, not True"),
        ("pte_prefetch = 1024\n", r"pte_prefetch = 1024 is out of range; it must be 1\.\.512"),
        ("pte_prefetch = 6\n", "pte_prefetch must be a power of 2 from 1 to 512, not 6"),
        ("cache_capacity = 10\n", "min_pte_list_desc = 14 is more than cache_capacity = 10"),
        ("min_page_header = 50\n", "min_page_header = 50 is more than cache_capacity = 40"),
        ("seeks = \n", "not valid TOML"),
    ],
)
def test_bad_model_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "model.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as exc:
        MmuConfig.from_toml(path)
    assert str(exc.value).startswith(f"model file {path}")
    assert "\n" not in str(exc.value)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist; check the path"):
        MmuConfig.from_toml(tmp_path / "nope.toml")
