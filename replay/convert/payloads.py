"""The events a converter reads, and how each one's payload is written in each layout.

Every known event has one or more payload patterns: the tracefs ``print fmt`` (ftrace, and
perf / trace-cmd when libtraceevent decodes it), the kvm plugin's rewritten text (trace-cmd),
older kernels' formats, and perf's ``[FAILED TO PARSE] field=value`` fallback (values in
decimal). The two events that come by the million (``kvm_page_fault`` and
``kvm_mmu_spte_requested``) also have a numpy fast path (:func:`fast_fields`); the rest are few
and are matched line by line.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.convert.buffer import (
    PAD,
    SPACE,
    first_in_window,
    last_in_window,
    parse_digits,
    window,
)
from replay.convert.swar import (
    LOW_BYTES,
    hex_digits_word,
    swar_hex_words,
    text_word,
    word,
    words,
)

if TYPE_CHECKING:
    from replay.convert.lines import LineBlock

USED = (
    "kvm_page_fault",
    "kvm_mmu_spte_requested",
    "mm_shrink_slab_start",
    "mm_shrink_slab_end",
    "mm_vmscan_kswapd_wake",
    "mm_vmscan_kswapd_sleep",
    "mm_vmscan_direct_reclaim_begin",
    "mm_vmscan_direct_reclaim_end",
    "mm_vmscan_memcg_reclaim_begin",
    "mm_vmscan_memcg_reclaim_end",
    "mm_vmscan_memcg_softlimit_reclaim_begin",
    "mm_vmscan_memcg_softlimit_reclaim_end",
    "kvm_mmu_zap_all_fast",
    "kvm_unmap_hva_range",
    "kvm_mmu_get_page",
    "kvm_mmu_prepare_zap_page",
    "damon_aggregated",
    "damon_monitor_intervals_tune",
)
"""Events that become trace rows or observed counters."""

KNOWN_UNUSED = (
    "kvm_exit",
    "kvm_entry",
    "kvm_mmu_set_spte",
    "fast_page_fault",
    "kvm_tdp_mmu_spte_changed",
    "kvm_age_hva",
    "kvm_test_age_hva",
    "kvm_set_spte_hva",
    "kvm_mmu_sync_page",
    "kvm_mmu_unsync_page",
    "mark_mmio_spte",
    "handle_mmio_page_fault",
    "check_mmio_spte",
    "kvm_mmu_split_huge_page",
    "kvm_fast_mmio",
    "kvm_mmu_pagetable_walk",
    "kvm_mmu_paging_element",
    "kvm_mmu_walker_error",
    "mm_vmscan_lru_isolate",
    "mm_vmscan_lru_shrink_active",
    "mm_vmscan_lru_shrink_inactive",
    "mm_vmscan_wakeup_kswapd",
    "mm_vmscan_write_folio",
    "mm_vmscan_node_reclaim_begin",
    "mm_vmscan_node_reclaim_end",
    "damos_before_apply",
    "damos_esz",
    "damos_stat_after_apply_interval",
    "damon_region_aggregated",
    "damon_aggregated_v2",
)
"""Events of the kvm, kvmmmu, vmscan and damon systems a replay does not need (counted by
name; :data:`.damon.DAMON_UNUSED`)."""

_H = r"(?:0x)?([0-9a-fA-F]+)"
_D = r"(-?\d+)"

# Each pattern yields the groups named in FIELDS[event], in order; the 'base' says how the
# numbers are written (16 or 10) for each group.
PATTERNS: dict[str, list[tuple[re.Pattern[str], tuple[int, ...]]]] = {
    # vcpu, address, error_code (vcpu may be missing on old kernels)
    "kvm_page_fault": [
        (
            re.compile(rf"^vcpu {_D} rip (?:0x)?[0-9a-fA-F]+ address {_H} error_code {_H}\s*$"),
            (10, 16, 16),
        ),
        (re.compile(rf"^()address {_H} error_code {_H}\s*$"), (10, 16, 16)),
        (
            re.compile(
                rf"^\[FAILED TO PARSE\] (?:vcpu_id={_D} )?(?:guest_rip=\d+ )?"
                rf"fault_address={_D} error_code={_D}\s*$"
            ),
            (10, 10, 10),
        ),
    ],
    # gfn, level
    "kvm_mmu_spte_requested": [
        (re.compile(rf"^gfn {_H} pfn {_H} level {_D}\s*$"), (16, 16, 10)),
        (
            re.compile(rf"^\[FAILED TO PARSE\] gfn={_D} pfn={_D} level={_D}\s*$"),
            (10, 10, 10),
        ),
    ],
    # name, pointer, nid, nr, cache items, delta, total_scan, priority
    "mm_shrink_slab_start": [
        (
            re.compile(
                r"^(\S+?)(?:\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?)?(?: \[\w+\])? (?:0x)?([0-9a-f]+): "
                rf"nid: {_D} objects to shrink {_D} gfp_flags \S+ "
                rf"(?:pgs_scanned \d+ lru_pgs \d+ )?cache items {_D} delta {_D} "
                rf"total_scan {_D}(?: priority {_D})?\s*$"
            ),
            (0, 16, 10, 10, 10, 10, 10, 10),
        ),
        (
            re.compile(
                r"^\[FAILED TO PARSE\] shr=(\d+) shrink=(\d+) "
                rf"nid={_D} nr_objects_to_shrink={_D} gfp_flags=\d+ cache_items={_D} "
                rf"delta={_D} total_scan={_D} priority={_D}\s*$"
            ),
            (10, 10, 10, 10, 10, 10, 10, 10),
        ),
    ],
    # name, pointer, nid, unused, new, total_scan, retval
    "mm_shrink_slab_end": [
        (
            re.compile(
                r"^(\S+?)(?:\+0x[0-9a-f]+(?:/0x[0-9a-f]+)?)?(?: \[\w+\])? (?:0x)?([0-9a-f]+): "
                rf"nid: {_D} unused scan count {_D} new scan count {_D} total_scan {_D} "
                rf"last shrinker return val {_D}\s*$"
            ),
            (0, 16, 10, 10, 10, 10, 10),
        ),
        (
            re.compile(
                r"^\[FAILED TO PARSE\] shr=(\d+) shrink=(\d+) "
                rf"nid={_D} unused_scan={_D} new_scan={_D} retval={_D} total_scan={_D}\s*$"
            ),
            (10, 10, 10, 10, 10, 10, 10),
        ),
    ],
    "mm_vmscan_kswapd_wake": [(re.compile(rf"^nid={_D}(?: zid=\d+)? order={_D}\s*$"), (10, 10))],
    "mm_vmscan_kswapd_sleep": [(re.compile(rf"^nid={_D}\s*$"), (10,))],
    # kvm-mmu-valid-gen, used pages (hex in the print fmt)
    "kvm_mmu_zap_all_fast": [
        (re.compile(rf"^kvm-mmu-valid-gen {_D} used_pages {_H}\s*$"), (10, 16)),
        (
            re.compile(rf"^\[FAILED TO PARSE\] mmu_valid_gen={_D} mmu_used_pages={_D}\s*$"),
            (10, 10),
        ),
    ],
    # start, end (host virtual addresses)
    "kvm_unmap_hva_range": [
        (re.compile(rf"^mmu notifier unmap range: {_H} -- {_H}\s*$"), (16, 16)),
        (re.compile(rf"^\[FAILED TO PARSE\] start={_D} end={_D}\s*$"), (10, 10)),
    ],
}
FIELDS: dict[str, tuple[str, ...]] = {
    "kvm_page_fault": ("vcpu", "address", "error_code"),
    "kvm_mmu_spte_requested": ("gfn", "pfn", "level"),
    "mm_shrink_slab_start": (
        "name",
        "shrinker",
        "nid",
        "nr",
        "cache_items",
        "delta",
        "total_scan",
        "priority",
    ),
    "mm_shrink_slab_end": (
        "name",
        "shrinker",
        "nid",
        "unused",
        "new",
        "total_scan",
        "retval",
    ),
    "mm_vmscan_kswapd_wake": ("nid", "order"),
    "mm_vmscan_kswapd_sleep": ("nid",),
    "kvm_mmu_zap_all_fast": ("gen", "used_pages"),
    "kvm_unmap_hva_range": ("start", "end"),
}
"""Names of each event's parsed values (events with no values just mark a time and a task)."""

# The shadow page printout of kvm_mmu_get_page / kvm_mmu_prepare_zap_page, three ways.
_SP_FTRACE = re.compile(
    r"^sp gen \d+ gfn ([0-9a-f]+) l(\d) \d-byte q\d( direct)? \S+( invalid)? !?nxe !?ad "
    r"root \d+ \w+(?: (new|existing))?\s*$"
)
# trace-cmd's kvm plugin (libtraceevent plugin_kvm.c) prints the role its own way:
# kvm_mmu_print_role writes "%u q%u%s %s%s %spae %snxe %swp%s%s%s" (level, quadrant, " direct",
# access, " invalid", then !-flags and " smep"/" smap"/" smm"), or "WORD: %08x" when the file's
# endianness differs from the host's, then " root %u " and "sync"/"unsync" (and a NUL).
# kvm_mmu_get_page's handler puts "new "/"existing " and "sp gfn %llx " before it;
# kvm_mmu_prepare_zap_page is printed by kvm_mmu_print_role alone: no gfn.
_PLUGIN_ROLE = (
    r"(?:(\d+) q\d+( direct)? [-wux]{3}(?: invalid)? !?pae !?nxe !?wp(?: smep)?(?: smap)?"
    r"(?: smm)?|WORD: ([0-9a-fA-F]+)) root \d+ (?:un)?sync\x00?\s*$"
)
_SP_PLUGIN = re.compile(r"^(?:(new|existing) )?sp gfn ([0-9a-f]+) " + _PLUGIN_ROLE)
_SP_PLUGIN_ROLE = re.compile(r"^" + _PLUGIN_ROLE)
_SP_RAW = re.compile(
    r"^\[FAILED TO PARSE\] mmu_valid_gen=\d+ gfn=(\d+) role=(\d+) root_count=\d+ "
    r"unsync=\d+(?: created=(\d))?\s*$"
)
ROLE_LEVEL_MASK = 0xF
ROLE_DIRECT_BIT = 1 << 7


def shadow_page(payload: str) -> tuple[int, int, bool, bool | None] | None:
    """(gfn, level, direct, created) of a shadow page printout; created is None for zaps."""
    m = _SP_FTRACE.match(payload)
    if m:
        created = None if m.group(5) is None else m.group(5) == "new"
        return int(m.group(1), 16), int(m.group(2)), m.group(3) is not None, created
    m = _SP_PLUGIN.match(payload)
    if m:
        created = None if m.group(1) is None else m.group(1) == "new"
        return (int(m.group(2), 16), *_plugin_role(m.groups()[2:]), created)
    m = _SP_PLUGIN_ROLE.match(payload)
    if m:
        # The plugin's kvm_mmu_prepare_zap_page: the role alone (gfn unknown, not counted).
        return (-1, *_plugin_role(m.groups()), None)
    m = _SP_RAW.match(payload)
    if m:
        role = int(m.group(2))
        created = None if m.group(3) is None else m.group(3) == "1"
        return (
            int(m.group(1)),
            role & ROLE_LEVEL_MASK,
            bool(role & ROLE_DIRECT_BIT),
            created,
        )
    return None


def _plugin_role(groups: tuple[str | None, ...]) -> tuple[int, bool]:
    """(level, direct) of the plugin's role text: its words, or its raw ``WORD: %08x``."""
    level, direct, word = groups
    if word is not None:
        role = int(word, 16)
        return role & ROLE_LEVEL_MASK, bool(role & ROLE_DIRECT_BIT)
    return int(level or 0), direct is not None


def access_ops(error_code: np.ndarray, codes: str | None) -> tuple[np.ndarray, str | None]:
    """Access types (read / write / exec) from fault error codes, and the codes' kind.

    ``codes`` is 'vmx', 'svm' or None (not told yet: told here from the first codes that
    show it, else read as svm). The bits are described in traces/logs/README.md, "Fault
    error codes".
    """
    from replay.trace.schema import OP_CODE

    ec = error_code.astype(np.uint64)
    if codes is None and len(ec):
        if np.any(ec >> np.uint64(32)):
            codes = "svm"
        elif np.any(ec & np.uint64(0x180)):
            codes = "vmx"
    write = (ec & np.uint64(0x2)) != 0
    fetch_bit = np.uint64(0x4 if codes == "vmx" else 0x10)
    fetch = (ec & fetch_bit) != 0
    ops = np.where(write, OP_CODE["write"], np.where(fetch, OP_CODE["exec"], OP_CODE["read"]))
    return ops, codes


_NO_FIELDS = {name for name in USED if name.endswith(("_reclaim_begin", "_reclaim_end"))}
"""Reclaim episode boundaries: their time and task are all a replay needs."""


def parse_payload(event: str, payload: str) -> tuple[Any, ...] | None:
    """The values of one event's payload, or None when it matches none of its patterns."""
    if event in _NO_FIELDS:
        return ()
    if event in ("kvm_mmu_get_page", "kvm_mmu_prepare_zap_page"):
        return shadow_page(payload)
    for pattern, bases in PATTERNS.get(event, ()):
        m = pattern.match(payload)
        if m is None:
            continue
        out: list[Any] = []
        for text, base in zip(m.groups(), bases, strict=True):
            if base == 0:
                out.append(text)
            elif text in (None, ""):
                out.append(None)
            else:
                out.append(int(text, base))
        return tuple(out)
    return None


# The fast path. kvm_page_fault: "vcpu %u rip 0x%lx address 0x%016llx error_code 0x%llx",
# read from both ends (the rip, of varying length, is not needed). kvm_mmu_spte_requested:
# "gfn %llx pfn %llx level %d", read from the start and the end.
FAST_FORMATS = ("kvm_page_fault", "kvm_mmu_spte_requested")
_ERROR_CODE = np.frombuffer(b" error_code 0x", dtype=np.uint8)
_ADDRESS = np.frombuffer(b"address 0x", dtype=np.uint8)
_VCPU = np.frombuffer(b"vcpu ", dtype=np.uint8)
_GFN = np.frombuffer(b"gfn ", dtype=np.uint8)
_LEVEL = np.frombuffer(b" level ", dtype=np.uint8)
TAIL = 40
"""Bytes at a payload's end searched for its last space."""


def _literal(buf: np.ndarray, at: np.ndarray, literal: np.ndarray) -> np.ndarray:
    """Whether ``literal`` (at most 16 bytes) is written at each ``at``: compared as words."""
    text = literal.tobytes()
    ok: np.ndarray = (word(buf, at) & LOW_BYTES[min(len(text), 8)]) == text_word(text[:8])
    if len(text) > 8:
        ok &= word(buf, at + len(text) - 8) == text_word(text[-8:])
    return ok


def _last_space(buf: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Position of the last space in ``[lo, hi)`` within :data:`TAIL` bytes of ``hi``."""
    tail = window(buf, hi - TAIL, TAIL)
    col = last_in_window(tail, 32)
    out: np.ndarray = np.where((col >= 0) & (hi - TAIL + col >= lo), hi - TAIL + col, -1)
    return out


_ADDRESS_W = text_word(b"address ")
_ERROR_W = text_word(b" error_c")
_ODE_W = text_word(b"ode 0x")
_VCPU_W = text_word(b"vcpu ")
_HEX_MASK6 = LOW_BYTES[6]
_HEX_MASK5 = LOW_BYTES[5]


def _page_faults_vmx(block: LineBlock, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Read kvm_page_fault lines whose error code has 3 digits, from 8-byte words.

    The last 43 bytes are "address 0x", 16 digits, " error_code 0x" and 3 digits, each at a
    fixed distance from the end of the line; "vcpu N " starts the payload.
    """
    buf = block.buf
    buf_words = words(buf)
    lo = block.msg_start[rows] + PAD
    hi = block.ends[rows] + PAD
    ok = (hi - lo > 43) & (buf_words[hi - 43] == _ADDRESS_W)
    ok &= (buf_words[hi - 35] & np.uint64(0xFFFF)) == np.uint64(0x7830)  # "0x"
    ok &= (buf_words[hi - 17] == _ERROR_W) & ((buf_words[hi - 9] & _HEX_MASK6) == _ODE_W)
    high, ok_h = swar_hex_words(buf_words[hi - 33])
    low, ok_l = swar_hex_words(buf_words[hi - 25])
    address = (high << np.uint64(32)) | low
    code, ok_c = swar_hex_words(hex_digits_word(buf_words[hi - 8], 3))
    head = buf_words[lo]
    ok &= ok_h & ok_l & ok_c & ((head & _HEX_MASK5) == _VCPU_W)
    # vcpu: up to 3 digits in bytes 5-7, then a space.
    b5, b6, b7 = ((head >> np.uint64(8 * k)) & np.uint64(0xFF) for k in (5, 6, 7))
    digit = [(x >= 48) & (x <= 57) for x in (b5, b6, b7)]
    one = digit[0] & (b6 == SPACE)
    two = digit[0] & digit[1] & (b7 == SPACE)
    v5, v6 = (x.astype(np.int64) - 48 for x in (b5, b6))
    vcpu = np.where(one, v5, v5 * 10 + v6)
    ok &= one | two
    return [vcpu.astype(np.uint64), address, code], ok


def fast_fields(
    block: LineBlock, rows: np.ndarray, event: str
) -> tuple[list[np.ndarray], np.ndarray]:
    """Parse a fast event's payload on ``rows`` with numpy.

    Returns its FIELDS (vcpu, address, error code; or gfn, pfn, level, with pfn not read) and
    a mask of the rows it could parse; the others take the line-by-line path.
    """
    if event == "kvm_page_fault":
        values, ok = _page_faults_vmx(block, rows)
        rest = np.flatnonzero(~ok)
        if len(rest):
            more, ok_more = _fields_searched(block, rows[rest], event)
            for v, m in zip(values, more, strict=True):
                v[rest] = m
            ok[rest] = ok_more
        return values, ok
    return _fields_searched(block, rows, event)


def _fields_searched(
    block: LineBlock, rows: np.ndarray, event: str
) -> tuple[list[np.ndarray], np.ndarray]:
    """The fast events' fields, found by searching each payload's last space."""
    buf = block.buf
    lo = block.msg_start[rows]
    hi = block.ends[rows]
    last = _last_space(buf, lo, hi)
    ok = last > lo
    if event == "kvm_page_fault":
        # ... address 0x<16 digits> error_code 0x<code>
        code, ok_c = parse_digits(
            buf, last + 3, hi, 16 if (hi - last - 3).max(initial=0) > 8 else 8, 16
        )
        ec_at = last - len(_ERROR_CODE) + 3
        addr_hi = ec_at
        addr_lo = addr_hi - 16
        ok &= (
            ok_c
            & _literal(buf, ec_at, _ERROR_CODE)
            & _literal(buf, addr_lo - len(_ADDRESS), _ADDRESS)
        )
        address, ok_a = parse_digits(buf, addr_lo, addr_hi, 16, 16)
        ok &= ok_a & _literal(buf, lo, _VCPU)
        head = window(buf, lo + len(_VCPU), 8)
        digits = first_in_window(head, 32)
        vcpu, ok_v = parse_digits(buf, lo + len(_VCPU), lo + len(_VCPU) + digits, 6, 10)
        ok &= ok_v & (digits > 0)
        return [vcpu, address, code], ok
    # gfn <hex> pfn <hex> level <n>
    level, ok_l = parse_digits(buf, last + 1, hi, 2, 10)
    ok &= ok_l & _literal(buf, last - len(_LEVEL) + 1, _LEVEL) & _literal(buf, lo, _GFN)
    head = window(buf, lo + len(_GFN), 20)
    digits = first_in_window(head, 32)
    gfn, ok_g = parse_digits(buf, lo + len(_GFN), lo + len(_GFN) + digits, 16, 16)
    ok &= ok_g & (digits > 0)
    return [gfn, np.zeros(len(rows), dtype=np.uint64), level], ok
