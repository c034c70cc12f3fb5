"""Payload texts read line by line: the slow path's patterns and trace-cmd's kvm plugin texts.

The plugin texts follow libtraceevent's plugin_kvm.c: ``kvm_mmu_get_page`` as ``new|existing
sp gfn %llx`` and the role, ``kvm_mmu_prepare_zap_page`` as the role alone (issue 12 item 18).
"""

from __future__ import annotations

import pytest

from replay.convert.payloads import parse_payload, shadow_page


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        # kvm_mmu_get_page through the plugin (the hostile capture's lines).
        ("new sp gfn 1 4 q0 wux !pae nxe wp root 0 sync", (1, 4, False, True)),
        (
            "existing sp gfn 1f 1 q3 direct --x invalid pae !nxe !wp smep smm root 2 unsync",
            (0x1F, 1, True, False),
        ),
        # kvm_mmu_prepare_zap_page through the plugin: no gfn.
        ("1 q0 direct wux !pae nxe wp root 0 sync", (-1, 1, True, None)),
        ("2 q0 wux !pae nxe wp root 0 sync", (-1, 2, False, None)),
        # The plugin's raw role word (a file of the other endianness): level 4 | direct (0x80).
        ("WORD: 00000084 root 0 sync", (-1, 4, True, None)),
        ("new sp gfn 2 WORD: 00000003 root 1 sync\x00", (2, 3, False, True)),
        # The kernel's own print fmt.
        ("sp gen 0 gfn 200 l1 8-byte q0 direct wux nxe ad root 0 sync new", (0x200, 1, True, True)),
    ],
)
def test_shadow_page_texts(payload: str, expected: tuple[object, ...]) -> None:
    assert shadow_page(payload) == expected


@pytest.mark.parametrize(
    "payload",
    ["q0 wux root 0 sync", "sp gfn 1 4 root 0", "1 q0 wux pae nxe wp root x sync", ""],
)
def test_shadow_page_refuses_other_text(payload: str) -> None:
    assert shadow_page(payload) is None


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (
            "vcpu 5 rip 0x7f08a4602116 address 0x0000000113600002 error_code 0x181 ",
            (5, 0x113600002, 0x181),
        ),
        ("vcpu 123456789 rip 0x1 address 0x1000 error_code 0x4\t", (123456789, 0x1000, 0x4)),
        ("vcpu 0 rip ffffffff81040f72 address fee000b0 error_code 182", (0, 0xFEE000B0, 0x182)),
        ("address 0x1000 error_code 0x6", (None, 0x1000, 0x6)),
    ],
)
def test_page_fault_slow_pattern(payload: str, expected: tuple[object, ...]) -> None:
    """Every line the fast path leaves (padding, widths, no zero padding) reads its 3 fields."""
    assert parse_payload("kvm_page_fault", payload) == expected
