"""Where a VM's guest memory sits in its VMM's address space: memslots' host addresses.

DAMON watching a VMM process (``vaddr`` operations) reports host virtual addresses; a region
is placed in a guest through the memslots' host addresses (``hva``): guest byte
``gpa + (hva - ua)`` for ``ua <= hva < ua + size``. Two sources, in order of preference:

- ``--vm-config`` memslots with ``hva_start`` (:mod:`.vms`);
- QEMU's ``kvm_set_user_memory`` trace lines, in any input (QEMU's ``log`` backend file, with
  or without its ``pid@sec.usec:`` prefix, or its ``ftrace`` backend's ``tracing_mark_write``
  lines in a kernel trace). Both spellings: ``AddrSpace#A Slot#S ...`` (QEMU >= 9.1) and the
  older ``Slot#N`` whose N is ``(A << 16) | S``. A line with ``size=0x0`` deletes its slot, a
  line with ``ret`` other than 0 changed nothing; the table is the slots live at the end of the
  log. Only address space 0 is guest RAM as a vCPU sees it outside SMM; SMM's (1) is left out.

Each file's lines (or, in a kernel trace, each process's) form one VMM's table.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from replay.convert.layout import LAYOUTS, SET_USER_MEMORY, parse_task, slow_line
from replay.trace.schema import PAGE_SIZE

if TYPE_CHECKING:
    from collections.abc import Iterable

MARK = b"kvm_set_user_memory "
SLOT_BITS = 16
"""QEMU before 9.1 printed the raw ``slot`` field: the address space id in bits 16 and up."""


@dataclass(frozen=True)
class HostSlot:
    """A memslot with its host address: guest ``[gpa, gpa + size)`` at host ``[hva, ...)``."""

    gpa: int
    size: int
    hva: int
    flags: int = 0


@dataclass
class SlotTable:
    """One VMM's memslots, as its ``kvm_set_user_memory`` lines left them."""

    source: str
    """The file the lines came from (with the process, when the trace names it)."""
    pid: int | None
    """The VMM's process id when the lines carry it (a kernel trace's task, QEMU's pid@)."""
    live: dict[tuple[int, int], HostSlot] = field(default_factory=dict)
    lines: int = 0

    def slots(self) -> list[HostSlot]:
        """The live slots of address space 0, by guest address."""
        return sorted((s for (a, _), s in self.live.items() if a == 0), key=lambda s: s.gpa)


def parse_set_user_memory(text: str) -> tuple[int, int, HostSlot, int, int | None] | None:
    """(address space, slot, the slot, ret, pid) of one line; None when it is not one."""
    m = SET_USER_MEMORY.search(text)
    if m is None:
        return None
    raw = int(m.group("slot"))
    space = int(m.group("as")) if m.group("as") is not None else raw >> SLOT_BITS
    slot = raw if m.group("as") is not None else raw & ((1 << SLOT_BITS) - 1)
    hs = HostSlot(
        int(m.group("gpa"), 16),
        int(m.group("size"), 16),
        int(m.group("ua"), 16),
        int(m.group("flags"), 16),
    )
    pid = int(m.group("pid")) if m.group("pid") else None
    return space, slot, hs, int(m.group("ret")), pid


def _task_pid(text: str, at: int) -> int | None:
    """The process of a kernel trace line's task column (before the event), if it shows."""
    got = slow_line(text)
    if isinstance(got, str) or at < len(got.head):
        return None
    for layout in LAYOUTS:
        task = parse_task(got.head, layout)
        if task is not None:
            return task.tgid if task.tgid is not None else task.pid
    return None


def scan_tables(paths: Iterable[tuple[str, str]]) -> tuple[list[SlotTable], list[str]]:
    """The memslot tables of every input, and the damaged lines found (``file:line: text``).

    Read apart from the conversion: the lines may come after the DAMON lines they place.

    ``paths`` are (path to read, name to show). Compressed logs are read through the
    converter's reader; plain ones are mapped and searched for the event's name.
    """
    tables: dict[tuple[str, int | None], SlotTable] = {}
    damaged: list[str] = []
    for path, shown in paths:
        for line_no, text in _lines_with_mark(path):
            got = parse_set_user_memory(text)
            if got is None:
                damaged.append(f"{shown}:{line_no}: {text.strip()[:160]}")
                continue
            space, slot, hs, ret, pid = got
            at = text.find("kvm_set_user_memory")
            # A kernel trace (QEMU's ftrace backend) may hold several VMMs: one table per
            # process. QEMU's own log is one VMM; its pid@ is a thread id, kept as the pid.
            task = _task_pid(text, at) if pid is None and at > 0 else None
            key = (shown, task)
            table = tables.setdefault(
                key, SlotTable(shown if task is None else f"{shown} (pid {task})", task)
            )
            if table.pid is None:
                table.pid = pid
            table.lines += 1
            if ret != 0:
                continue
            if hs.size == 0:
                table.live.pop((space, slot), None)
            else:
                table.live[(space, slot)] = hs
    return [t for t in tables.values() if t.slots()], damaged


def _lines_with_mark(path: str) -> Iterable[tuple[int, str]]:
    """(line number, text) of every line of a log holding ``kvm_set_user_memory ``."""
    import mmap
    import os

    from replay.convert.source import codec_of, read_blocks

    with Path(path).open("rb") as fh:
        head = fh.read(4)
        if not codec_of(head):
            if os.fstat(fh.fileno()).st_size == 0:
                return
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
                yield from _marked(bytes(m) if m.find(MARK) >= 0 else b"", 1)
            return
    line = 1
    for block in read_blocks(path):
        yield from _marked(block.data, line)
        line += block.data.count(b"\n")


def _marked(data: bytes, first_line: int) -> Iterable[tuple[int, str]]:
    pos = data.find(MARK)
    while pos >= 0:
        start = data.rfind(b"\n", 0, pos) + 1
        end = data.find(b"\n", pos)
        end = len(data) if end < 0 else end
        yield first_line + data.count(b"\n", 0, start), data[start:end].decode("utf-8", "replace")
        pos = data.find(MARK, end)


@dataclass(frozen=True)
class Pieces:
    """Regions cut at memslot bounds: each piece a guest range, with the region it came from."""

    region: np.ndarray
    """Index of the region each piece is of."""
    gpa: np.ndarray
    length: np.ndarray
    outside: np.ndarray
    """Per region: its bytes in no memslot (the VMM's own memory)."""


def place(start: np.ndarray, end: np.ndarray, slots: list[HostSlot]) -> Pieces:
    """Cut host ranges ``[start, end)`` (uint64) into guest pieces, one per memslot overlapped.

    A slot aliasing another's host range (QEMU maps a few ROM/VGA ranges twice) gets its own
    piece: the host page is both guest pages. Bytes in no slot are counted per region.
    """
    regions, gpas, lengths = [], [], []
    covered = np.zeros(len(start), dtype=np.uint64)
    for s in sorted(slots, key=lambda s: s.hva):
        lo = np.maximum(start, np.uint64(s.hva))
        hi = np.minimum(end, np.uint64(s.hva + s.size))
        hit = np.flatnonzero(lo < hi)
        if not len(hit):
            continue
        regions.append(hit)
        gpas.append((lo[hit] - np.uint64(s.hva)).astype(np.int64) + s.gpa)
        lengths.append((hi[hit] - lo[hit]).astype(np.int64))
    union = _union(start, end, slots)
    covered += union
    if regions:
        region = np.concatenate(regions)
        order = np.lexsort((np.concatenate(gpas), region))
        return Pieces(
            region[order],
            np.concatenate(gpas)[order],
            np.concatenate(lengths)[order],
            (end - start) - covered,
        )
    empty = np.zeros(0, dtype=np.int64)
    return Pieces(empty, empty, empty, end - start)


def _union(start: np.ndarray, end: np.ndarray, slots: list[HostSlot]) -> np.ndarray:
    """Bytes of each range inside the union of the slots' host ranges (aliases once)."""
    spans: list[list[int]] = []
    for s in sorted(slots, key=lambda s: s.hva):
        if spans and s.hva <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], s.hva + s.size)
        else:
            spans.append([s.hva, s.hva + s.size])
    out = np.zeros(len(start), dtype=np.uint64)
    for lo_s, hi_s in spans:
        lo = np.maximum(start, np.uint64(lo_s))
        hi = np.minimum(end, np.uint64(hi_s))
        out += np.where(lo < hi, hi - lo, np.uint64(0))
    return out


def aligned(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Which ranges start and end on a page (DAMON's regions do: DAMON_MIN_REGION)."""
    page = np.uint64(PAGE_SIZE - 1)
    out: np.ndarray = ((start & page) == 0) & ((end & page) == 0) & (end > start)
    return out
