"""The three line layouts: telling them apart, and the slow path for lines the fast split left.

ftrace (the tracefs ``trace`` file): ``comm-pid [(tgid)] [CPU] FLAGS SECONDS: event: payload``,
12 ``#`` header lines. perf script: ``comm tid [CPU] SECONDS: group:event: payload`` (``comm
pid/tid`` with ``-F +pid``). trace-cmd report: ``comm-pid [CPU] SECONDS: event: payload``, a
``cpus=N`` first line, kvm plugin texts, optional ``instance:`` prefix (see
traces/logs/README.md, "Line layouts").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

LAYOUTS = ("ftrace", "perf", "trace-cmd")

LINE = re.compile(
    r"^(?P<head>.*?)\s*\[(?P<cpu>\d{1,5})\]\s+(?:\S{1,6}\s+)?(?P<ts>\d+\.\d+):\s+"
    r"(?P<event>\w+(?::\w+)?):(?:\s+(?P<msg>.*?))?\s*$"
)
"""Any layout's event line, for the lines the fast path could not split."""
SET_USER_MEMORY = re.compile(
    r"(?:(?P<pid>\d+)@\d+\.\d+:)?kvm_set_user_memory (?:AddrSpace#(?P<as>\d+) )?"
    r"Slot#(?P<slot>\d+) flags=0x(?P<flags>[0-9a-fA-F]+) gpa=0x(?P<gpa>[0-9a-fA-F]+) "
    r"size=0x(?P<size>[0-9a-fA-F]+) ua=0x(?P<ua>[0-9a-fA-F]+)"
    r"(?: guest_memfd=-?\d+ guest_memfd_offset=0x[0-9a-fA-F]+)? ret=(?P<ret>-?\d+)"
)
"""One ``kvm_set_user_memory`` line of QEMU's trace (both spellings, with or without pid@)."""
LOST = re.compile(r"^\s*CPU:\s*\d+\s+\[(?:LOST (\d+) EVENTS|(\d+) EVENTS DROPPED)\]\s*$")
HEADER = re.compile(r"^\s*(?:#|cpus=\d+\s*$|version = )")

_DASH_HEAD = re.compile(
    r"^(?:(?P<inst>[\w.-]+):\s+)?(?P<comm>.*?)-(?P<pid>\d+)(?:\s*\(\s*(?P<tgid>\d+|-+)\s*\))?$"
)
_PERF_HEAD = re.compile(r"^(?P<comm>.*?)\s*(?:(?P<tgid>\d+)/)?(?P<pid>\d+)$")
VCPU_THREAD = re.compile(r"^CPU (\d+)/KVM$")


@dataclass(frozen=True)
class Task:
    """The task column of a line: who emitted the event."""

    comm: str
    pid: int
    tgid: int | None
    """The thread group (process) when the log has it (ftrace record-tgid, perf -F +pid)."""

    @property
    def vcpu_from_name(self) -> int | None:
        """The vCPU index of a ``CPU n/KVM`` thread (QEMU's name for vCPU threads)."""
        m = VCPU_THREAD.match(self.comm)
        return int(m.group(1)) if m else None


def parse_task(head: str, layout: str) -> Task | None:
    """The task of a head column in ``layout``; None when it is not one."""
    text = head.strip()
    m = (_PERF_HEAD if layout == "perf" else _DASH_HEAD).match(text)
    if m is None:
        return None
    tgid = m.group("tgid")
    return Task(
        comm=m.group("comm").strip(),
        pid=int(m.group("pid")),
        tgid=int(tgid) if tgid and tgid.isdigit() else None,
    )


def event_name(column: str) -> tuple[str, bool]:
    """The event's name and whether it came as ``group:event`` (perf's way)."""
    text = column.strip().rstrip(":")
    if ":" in text:
        return text.split(":", 1)[1], True
    return text, False


@dataclass(frozen=True)
class SlowLine:
    """A line the fast path could not split, read with a regular expression."""

    t_ns: int
    head: str
    event: str
    payload: str


def slow_line(text: str) -> SlowLine | str:
    """An event line, or why the line is skipped.

    The reason is 'header', 'blank', 'lost', 'long' (a line past the reader's limit, which
    it replaced by a NUL line: :data:`.source.LONG_LINE`), 'memslot' (QEMU's
    ``kvm_set_user_memory``, read apart by :mod:`.hostmap`) or 'malformed'.
    """
    if text.startswith("\x00"):
        return "long"
    if not text.strip():
        return "blank"
    if HEADER.match(text):
        return "header"
    if LOST.match(text):
        return "lost"
    m = LINE.match(text)
    if m is None:
        if "kvm_set_user_memory " in text and SET_USER_MEMORY.search(text):
            return "memslot"  # QEMU's log backend: no kernel trace columns
        return "malformed"
    seconds, _, frac = m.group("ts").partition(".")
    if len(frac) > 9:
        return "malformed"
    t_ns = int(seconds) * 1_000_000_000 + int(frac.ljust(9, "0"))
    return SlowLine(t_ns, m.group("head"), m.group("event"), m.group("msg") or "")


def lost_count(text: str) -> int:
    """Events a lost-events notice says were lost."""
    m = LOST.match(text)
    if m is None:
        return 0
    return int(m.group(1) or m.group(2))
