from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from replay.errors import ScenarioError
from replay.synth import list_scenarios, load_scenario
from tests.builders import TINY_SCENARIO

Make = Callable[..., Path]

SHIPPED = [
    "quick",
    "tdp-host-pressure",
    "legacy-mmu-pressure",
    "many-small-vms",
    "host-swap",
    "huge-pages",
]


def test_every_required_scenario_is_shipped_with_a_header() -> None:
    assert set(SHIPPED) <= set(list_scenarios())
    for name in list_scenarios():
        sc = load_scenario(name)
        text = sc.path.read_text()
        assert text.startswith(f"# {name}:"), f"{name}.toml starts with its comment header"
        assert sc.name == name
        assert sc.description


def test_legacy_scenario_is_8_shadow_direct_vms_of_4_vcpus() -> None:
    sc = load_scenario("legacy-mmu-pressure")
    assert len(sc.vms) == 8
    assert {(v.vcpus, v.mmu_mode) for v in sc.vms} == {(4, "shadow_direct")}
    kinds = [p.kind for p in sc.pressure]
    assert kinds.index("kswapd") < kinds.index("drop_caches")


def test_many_small_vms_is_100_single_vcpu_vms() -> None:
    sc = load_scenario("many-small-vms")
    assert len(sc.vms) == 100
    assert {v.vcpus for v in sc.vms} == {1}
    assert len({v.name for v in sc.vms}) == 100


def test_overrides_apply(scenario_file: Make) -> None:
    sc = load_scenario(str(scenario_file()), seed=9, accesses=77, duration_s=2.5)
    assert (sc.seed, sc.accesses, sc.duration_s) == (9, 77, 2.5)


def test_sizes_accept_units(scenario_file: Make) -> None:
    text = TINY_SCENARIO.replace('size = "64MiB"', 'size = "0x4000000"')
    sc = load_scenario(str(scenario_file(text)))
    assert sc.vms[0].memslots[0].size == 64 << 20


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("vcpus = 2", "vpcus = 2", "unknown key 'vpcus'; did you mean 'vcpus'?"),
        ('size = "64MiB"', 'size = "-64MiB"', "size = '-64MiB' is not a size"),
        ('size = "64MiB"', "size = -4096", "size = -4096 must be positive"),
        ('size = "64MiB"', 'size = "12345"', "size 12345 must be a positive multiple of 4096"),
        ('kind = "uniform"', 'kind = "random"', "kind 'random' must be one of uniform, zipf"),
        ("rate = 1000", "rate = -5", "rate = -5 is out of range"),
        ('mmu_mode = "shadow_direct"', 'mmu_mode = "shadow"', "mmu_mode 'shadow' must be one of"),
        ("duration_s = 1.0", "duration_s = 0", "duration_s = 0 is out of range"),
        ('kind = "kswapd"', 'kind = "kswap"', "kind 'kswap' must be one of kswapd"),
        ("interval_ms = 50", "interval_ms = 50\nnr_to_scan = 5", "unknown key 'nr_to_scan'"),
        ("vcpus = 2", "vcpus = 2\n", ""),
        # Where: a dotted key, or the entry of an array of tables (with its name).
        (
            "duration_s = 1.0",
            "duration_s = -1.0",
            "s.toml: scenario.duration_s = -1.0 is out of range; it must be > 0",
        ),
        (
            "rate = 1000",
            "rate = inf",
            "s.toml: [[vm]] #1 (a) workload[0]: rate = inf is not a finite number",
        ),
        ("rate = 1000", "rate = 1000\nmix = { reed = 1 }", "unknown key 'mix.reed'"),
        (
            "vcpus = 2",
            "vcpus = 2\nroot_level = 3",
            "root_level = 3 is out of range; it must be 4..5",
        ),
        ("seed = 1", "seed = 9223372036854775808", "seed = 9223372036854775808 is out of range"),
        ("interval_ms = 50", "interval_ms = 50\nnodes = 0", "[[pressure]] #1 (kswapd): nodes = 0"),
    ],
)
def test_bad_scenarios_name_the_problem(
    scenario_file: Make, old: str, new: str, message: str
) -> None:
    text = TINY_SCENARIO.replace(old, new, 1)
    assert text != TINY_SCENARIO or not message
    if not message:
        load_scenario(str(scenario_file(text)))
        return
    with pytest.raises(ScenarioError, match=re.escape(message)):
        load_scenario(str(scenario_file(text)))


def test_vcpus_without_workload(scenario_file: Make) -> None:
    text = TINY_SCENARIO.replace('kind = "uniform"', 'vcpus = [0]\nkind = "uniform"')
    with pytest.raises(ScenarioError, match=r"vCPUs \[1\] have no workload"):
        load_scenario(str(scenario_file(text)))


def test_overlapping_memslots(scenario_file: Make) -> None:
    text = TINY_SCENARIO.replace(
        'memslots = [{ gpa_start = 0, size = "64MiB" }]',
        'memslots = [{ gpa_start = 0, size = "64MiB" }, { gpa_start = "32MiB", size = "64MiB" }]',
    )
    with pytest.raises(ScenarioError, match="overlapping memslots"):
        load_scenario(str(scenario_file(text)))


def test_not_toml(scenario_file: Make) -> None:
    with pytest.raises(ScenarioError, match="not valid TOML"):
        load_scenario(str(scenario_file("[scenario\nname=")))


def test_unknown_name_lists_the_shipped_ones() -> None:
    with pytest.raises(ScenarioError, match=r"neither a file nor a shipped scenario.*quick"):
        load_scenario("no-such-scenario")


def test_missing_path() -> None:
    with pytest.raises(ScenarioError, match="does not exist"):
        load_scenario("missing/dir/x.toml")


def test_a_folder_or_a_binary_file_is_named_as_such(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"is a folder; give the path of a \.toml file"):
        load_scenario(str(tmp_path))
    binary = tmp_path / "trace.toml"
    binary.write_bytes(b"PAR1\x00\x00")
    with pytest.raises(ScenarioError, match="is a binary file, not TOML text"):
        load_scenario(str(binary))


def test_pressure_vm_must_exist(scenario_file: Make) -> None:
    text = TINY_SCENARIO + '\n[[pressure]]\nkind = "zap_all"\nvm = "zz"\nat_s = [0.5]\n'
    with pytest.raises(ScenarioError, match="vm 'zz' names no VM"):
        load_scenario(str(scenario_file(text)))
