"""VM configuration files, memslot inference and placing host-address unmaps."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest

from replay.convert import ConvertOptions, ConvertReport
from replay.convert.converter import FileConverter
from replay.convert.rows import Rows
from replay.convert.vms import GiB, VmConfigError, VmRegistry, inferred_slots, load_vm_config
from replay.trace.schema import EVENT_CODE

if TYPE_CHECKING:
    from pathlib import Path

CONFIG = """
mmu_mode = "shadow_direct"
[[vm]]
name = "a"
tgid = 100
[[vm.memslots]]
gpa_start = 0
size = "1GiB"
hva_start = "0x7f0000000000"
[[vm]]
name = "b"
threads = [201, 202]
mmu_mode = "tdp_mmu"
[[vm.memslots]]
gpa_start = "4GiB"
size = "2GiB"
backing = "2m"
hva_start = "0x7e0000000000"
"""


def test_vm_config(tmp_path: Path) -> None:
    path = tmp_path / "vms.toml"
    path.write_text(CONFIG)
    a, b = load_vm_config(path)
    assert (a.name, a.tgid, a.mmu_mode, a.slots[0].hva_start) == (
        "a",
        100,
        "shadow_direct",
        0x7F0000000000,
    )
    assert (b.threads, b.mmu_mode, b.slots[0].slot.gpa_start, b.slots[0].slot.backing) == (
        (201, 202),
        "tdp_mmu",
        4 * GiB,
        "2m",
    )
    path.write_text(CONFIG.replace("tgid = 100", "tgid = 100\nvcpu = 3"))
    with pytest.raises(VmConfigError, match="unknown key 'vcpu'; did you mean 'vcpus'"):
        load_vm_config(path)
    path.write_text('[[vm]]\nname = "c"\n')
    with pytest.raises(VmConfigError, match="give tgid"):
        load_vm_config(path)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('name = "b"', 'name = "a"', "[[vm]]: VM name 'a' is used twice"),
        ("threads = [201, 202]", 'threads = "201"', "[[vm]] #2: threads must be a list of whole"),
        ("threads = [201, 202]", "threads = [201, 0]", "[[vm]] #2: threads = 0 is out of range"),
        ('mmu_mode = "tdp_mmu"', 'mmu_mode = "ept"', "[[vm]] #2: mmu_mode 'ept' must be one of"),
        ('mmu_mode = "shadow_direct"', "root_level = 6", "root_level = 6 is out of range"),
        (
            'hva_start = "0x7e0000000000"',
            'hva_start = "0x7e0000000000"\nhva_strat = 1',
            "[[vm]] #2 memslots[0]: unknown key 'hva_strat'; did you mean 'hva_start'?",
        ),
        (
            'hva_start = "0x7f0000000000"',
            "hva_start = -1",
            "[[vm]] #1 memslots[0]: hva_start = -1 must be >= 0",
        ),
        ('size = "2GiB"', "size = 4097", "[[vm]] #2 memslots[0]: size 4097 must be a positive"),
    ],
)
def test_bad_vm_configs_name_the_entry_and_the_key(
    tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = tmp_path / "vms.toml"
    assert old in CONFIG
    path.write_text(CONFIG.replace(old, new, 1))
    with pytest.raises(VmConfigError, match=re.escape(message)) as exc:
        load_vm_config(path)
    assert str(exc.value).startswith(f"vm config {path}: ")


def test_a_vm_config_that_is_not_a_toml_file(tmp_path: Path) -> None:
    with pytest.raises(VmConfigError, match="does not exist; check the path"):
        load_vm_config(tmp_path / "nope.toml")
    with pytest.raises(VmConfigError, match="is a folder"):
        load_vm_config(tmp_path)
    path = tmp_path / "vms.toml"
    path.write_text("[[vm]\n")
    with pytest.raises(VmConfigError, match=r"not valid TOML: .* at line 1, column 5"):
        load_vm_config(path)


def test_unmaps_are_placed_through_the_slots_host_addresses(tmp_path: Path) -> None:
    path = tmp_path / "vms.toml"
    path.write_text(CONFIG)
    configs = load_vm_config(path)
    report = ConvertReport()
    conv = FileConverter(
        "-", report, VmRegistry(configs, "tdp_mmu"), ConvertOptions(), "kvm_page_fault"
    )
    rows = Rows()
    conv._unmap(rows, 10, 1, 0x7E0000000000 + 0x3000, 0x7E0000000000 + 0x5000)  # in b's slot
    conv._unmap(rows, 11, 2, 0x100000, 0x200000)  # in no slot
    got = rows.take()
    assert got["event"].tolist() == [EVENT_CODE["unmap"]]
    assert got["gpa"].tolist() == [4 * GiB + 0x3000]
    assert got["len"].tolist() == [0x2000]
    assert conv.registry.vms[int(got["vm"][0])].name == "b"
    assert report.observed["unplaced_unmaps"] == 1


def test_inferred_slots_leave_out_the_mmio_window() -> None:
    slots = inferred_slots({0, 1, 3, 5})
    assert [(s.gpa_start, s.size) for s in slots] == [
        (0, 2 * GiB),
        (3 * GiB, 0xFEC0_0000 - 3 * GiB),
        (5 * GiB, GiB),
    ]
