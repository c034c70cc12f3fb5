"""DAMON's ``damon_aggregated`` observations as ``region`` rows, placed in the guests.

The lines (kernel ``include/trace/events/damon.h``; all three layouts print the same payload):

- ``damon_aggregated: target_id=%lu nr_regions=%u %lu-%lu: %u %u`` (5.17 and later): the
  target's index in its context, the target's region count, ``[start, end)`` in bytes,
  ``nr_accesses`` (sampling checks of the aggregation window that found the region accessed)
  and ``age``. 5.15 and 5.16 print no age, and their ``target_id`` is a kernel pointer: those
  targets are numbered in order of first appearance (the kernel emits targets in index order).
  perf's ``[FAILED TO PARSE]`` and ``trace-cmd report -R`` print ``name=value`` fields instead
  (``unsigned long`` ones in ``0x`` hex in the first).
- ``damon_monitor_intervals_tune: sample_us=%lu`` (6.17 and later, auto-tuning on): the new
  sampling interval of that kdamond from its next aggregation on; the aggregation interval is
  ``sample_us x aggr_samples``, the ratio the user set, which stays.
- Other DAMON events (``damos_before_apply``, ``damos_esz``, ...) are counted by name, not used.

One aggregation is ``nr_regions`` consecutive lines of one target of one kdamond (damo groups
them the same way): a burst cut short (lost events) or a region overlapping an earlier one of
its aggregation is counted and reported, never silently taken. Each region becomes one row per
memslot piece (:func:`.hostmap.place`) at its line's time stamp (the window ended then); its
bytes in no memslot (the VMM's own memory) are counted per target. Intervals come from the
record when it holds them (damo files; tune lines), else ``--damon-intervals``: without either a
conversion stops, since ``nr_accesses`` means nothing without them.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.convert.buffer import PAD, SPACE, first_in_window, window
from replay.convert.hostmap import aligned, place
from replay.convert.report import EXAMPLES
from replay.convert.source import LogFormatError
from replay.convert.swar import decimal_spans

if TYPE_CHECKING:
    from collections.abc import Callable

    from replay.convert.hostmap import HostSlot, SlotTable
    from replay.convert.layout import Task
    from replay.convert.lines import LineBlock
    from replay.convert.report import ConvertReport
    from replay.convert.rows import Rows
    from replay.convert.vms import VmConfig, VmRegistry

AGGREGATED = "damon_aggregated"
TUNE = "damon_monitor_intervals_tune"
DAMON_USED = (AGGREGATED, TUNE)
DAMON_UNUSED = (
    "damos_before_apply",
    "damos_esz",
    "damos_stat_after_apply_interval",
    "damon_region_aggregated",
    "damon_aggregated_v2",
)
"""DAMON events counted, not used: scheme actions and statistics, and mm.git's probe variant."""

_N = r"(0x[0-9a-fA-F]+|\d+)"
_AGGREGATED = (
    re.compile(r"^target_id=(\d+) nr_regions=(\d+) (\d+)-(\d+): (\d+)(?: (\d+|None))?\s*$"),
    re.compile(
        rf"^(?:\[FAILED TO PARSE\] )?target_id={_N} nr_regions={_N} start={_N} end={_N} "
        rf"nr_accesses={_N}(?: age={_N})?\s*$"
    ),
)
_TUNE = re.compile(rf"^(?:\[FAILED TO PARSE\] )?sample_us={_N}\s*$")
NO_AGE = -1
CUT_SHORT = "DAMON aggregations cut short (fewer lines than nr_regions: events lost?)"
MISSING_INTERVALS = (
    "DAMON lines but no sampling and aggregation intervals (the text holds them only in "
    "damon_monitor_intervals_tune lines, and those give only the sampling one): give "
    "--damon-intervals SAMPLE_US,AGGR_US as the monitor ran (damo's .kdamonds file, or sysfs "
    "kdamonds/N/contexts/0/monitoring_attrs/intervals)"
)
NO_MAP = (
    "DAMON regions but no memslot map to place them in guests: give --vm-config with "
    "hva_start on each memslot (and damon_target on the VM), or add QEMU's "
    "kvm_set_user_memory trace (-trace kvm_set_user_memory) to the inputs"
)


def _int(text: str) -> int:
    return int(text, 16) if text.startswith("0x") else int(text)


def parse_aggregated(payload: str) -> tuple[int, int, int, int, int, int] | None:
    """(target, nr_regions, start, end, nr_accesses, age or -1) of a payload; None if not one."""
    for pattern in _AGGREGATED:
        m = pattern.match(payload)
        if m is not None:
            g = m.groups()
            age = NO_AGE if g[5] in (None, "None") else _int(g[5])
            return _int(g[0]), _int(g[1]), _int(g[2]), _int(g[3]), _int(g[4]), age
    return None


def parse_tune(payload: str) -> int | None:
    """The new sampling interval (µs) of a ``damon_monitor_intervals_tune`` payload."""
    m = _TUNE.match(payload)
    return None if m is None else _int(m.group(1))


def aggregated_fields(block: LineBlock, rows: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """``damon_aggregated`` payloads of lines ``rows`` read with numpy (decimal, print fmt).

    Returns target, nr_regions, start, end, nr_accesses, age (-1 when absent) as uint64 /
    int64 columns, and which lines were read; the others go to :func:`parse_aggregated`.
    """
    buf = block.buf
    lo = block.msg_start[rows]
    hi = block.ends[rows]
    ok = _has(buf, lo, b"target_id=")
    values = []
    at = lo + 10
    for stop, skip, width, literal in (
        (SPACE, 12, 20, b" nr_regions="),
        (SPACE, 1, 10, None),
        (ord("-"), 1, 16, None),
        (ord(":"), 2, 16, None),
    ):
        end = at + first_in_window(window(buf, at, width + 1), stop)
        ok &= end > at
        if literal is not None:
            ok &= _has(buf, end, literal)
        value, good = decimal_spans(buf, at, np.where(ok, end, at + 1))
        values.append(value)
        ok &= good
        at = end + skip
    ok &= buf[at - 1 + PAD] == SPACE
    space = first_in_window(window(buf, at, 11), SPACE)
    with_age = (space > 0) & (at + space < hi)
    acc_end = np.where(with_age, at + space, hi)
    nacc, good = decimal_spans(buf, at, acc_end)
    ok &= good
    age, good_age = decimal_spans(buf, acc_end + 1, np.where(with_age, hi, acc_end + 2))
    ok &= good_age | ~with_age
    age_col = np.where(with_age, age.astype(np.int64), NO_AGE)
    return [*values, nacc, age_col], ok


def _has(buf: np.ndarray, at: np.ndarray, literal: bytes) -> np.ndarray:
    want = np.frombuffer(literal, dtype=np.uint8)
    out: np.ndarray = (window(buf, at, len(want)) == want).all(axis=1)
    return out


@dataclass
class Intervals:
    """A monitor's sampling and aggregation intervals (µs), and where they were read."""

    sample_us: int
    aggr_us: int
    source: str
    """``record`` (damo file, or a tune line), ``option`` (--damon-intervals)."""

    @property
    def max_accesses(self) -> int:
        """The most sampling checks one aggregation holds (``aggr_samples``)."""
        return max(1, self.aggr_us // self.sample_us)


@dataclass
class Placement:
    """What a DAMON target is: a VM (provisional index) and its slots, or why it is none."""

    vm: int | None
    name: str
    slots: list[HostSlot]
    counts: Counter[str] = field(default_factory=Counter)


class DamonPlacer:
    """DAMON targets to VMs and memslots, shared by every input of one conversion.

    A target is (monitor, index): a kdamond task of a text log, or a damo file. Its VM: the
    ``--vm-config`` VM with ``damon_target`` = its index; when no VM sets ``damon_target``, the
    one VM whose memslot host addresses are known (``hva_start`` or ``kvm_set_user_memory``);
    several such VMs without ``damon_target`` cannot be told apart (an error naming the fix).
    """

    def __init__(
        self,
        configs: list[VmConfig],
        inputs: list[tuple[str, str]],
        registry: VmRegistry,
        intervals: tuple[int, int] | None,
        report: ConvertReport,
    ) -> None:
        self.configs = configs
        self.inputs = inputs
        """(path read, name shown) of every input, searched for memslot tables when needed."""
        self._tables: list[SlotTable] | None = None
        self.report = report
        self.registry = registry
        self.option = intervals
        self.targets: dict[tuple[str, int], Placement] = {}
        self.intervals_seen: dict[str, dict[str, Any]] = {}
        self.notes: Counter[str] = Counter()
        """Aggregations, tune lines, aggregations cut short: counted for the report."""

    def note(self, what: str, n: int = 1) -> None:
        """Count something about the DAMON record (reported in ``provenance.damon``)."""
        self.notes[what] += n

    @property
    def tables(self) -> list[SlotTable]:
        """QEMU's memslot tables in the inputs, read on first need (DAMON lines seen)."""
        if self._tables is None:
            from replay.convert.hostmap import scan_tables

            self._tables, damaged = scan_tables(self.inputs)
            for text in damaged:
                where, _, rest = text.partition(": ")
                self.report.malformed(where, rest, "unreadable kvm_set_user_memory line")
        return self._tables

    def initial_intervals(self) -> Intervals | None:
        """The intervals a text log starts with: ``--damon-intervals``, if given."""
        if self.option is None:
            return None
        return Intervals(self.option[0], self.option[1], "option")

    def target(
        self, monitor: str, index: int, where: str, t_ns: int, pid: int | None = None
    ) -> Placement:
        """The placement of a target, resolved on first sight.

        ``t_ns`` is its first region's time; ``pid`` the monitored process, where the record
        names it (a damo ``.kdamonds`` file).
        """
        key = (monitor, index)
        got = self.targets.get(key)
        if got is None:
            got = self.targets[key] = self._resolve(index, where, t_ns, pid)
        return got

    def _resolve(self, index: int, where: str, t_ns: int, pid: int | None) -> Placement:
        from replay.convert.layout import Task

        named = [c for c in self.configs if c.damon_target is not None]
        if named:
            cfg = next((c for c in named if c.damon_target == index), None)
            if cfg is None:
                return Placement(None, f"no --vm-config VM has damon_target = {index}", [])
            return self._config_vm(cfg, where, t_ns)
        candidates: list[tuple[Task, str, list[HostSlot]]] = []
        claimed = set()
        for cfg in self.configs:
            table = self._table_of(cfg)
            if any(s.hva_start is not None for s in cfg.slots) or table is not None:
                candidates.append((_config_task(cfg), cfg.name, self._slots_of(cfg, where)))
                if table is not None:
                    claimed.add(id(table))
        for t in self.tables:
            if id(t) not in claimed:
                task = Task("vmm", t.pid, t.pid) if t.pid else Task("vmm", 0, None)
                candidates.append((task, t.source, t.slots()))
        if not candidates:
            raise LogFormatError(f"{where}: {NO_MAP}")
        if pid is not None and len(candidates) > 1:
            # The record names the process it watched: the VM of that process, if one is known.
            mine = [c for c in candidates if c[0].tgid == pid]
            candidates = mine or candidates
        if len(candidates) > 1:
            names = ", ".join(c[1] for c in candidates[:4])
            raise LogFormatError(
                f"{where}: DAMON target {index} could be any of {len(candidates)} VMs whose "
                f"memslot host addresses are known ({names}): give --vm-config with "
                "damon_target = N on each VM DAMON watched"
            )
        task, _, slots = candidates[0]
        vm = self.registry.vm_of(task, t_ns, where)
        if task.tgid is None and task.comm == "vmm":
            self.registry.mark_table_only(vm)
        self.registry.note_host_slots(vm, slots)
        return Placement(vm, self.registry.vms[vm].name, slots)

    def _config_vm(self, cfg: VmConfig, where: str, t_ns: int) -> Placement:
        slots = self._slots_of(cfg, where)
        vm = self.registry.vm_of(_config_task(cfg), t_ns, where)
        self.registry.note_host_slots(vm, slots)
        return Placement(vm, cfg.name, slots)

    def _slots_of(self, cfg: VmConfig, where: str) -> list[HostSlot]:
        from replay.convert.hostmap import HostSlot

        slots = [
            HostSlot(s.slot.gpa_start, s.slot.size, s.hva_start)
            for s in cfg.slots
            if s.hva_start is not None
        ]
        if slots:
            return slots
        table = self._table_of(cfg)
        if table is None and len(self.tables) == 1 and len(self.configs) == 1:
            table = self.tables[0]
        if table is None:
            raise LogFormatError(f"{where}: VM {cfg.name!r}: {NO_MAP}")
        return table.slots()

    def _table_of(self, cfg: VmConfig) -> SlotTable | None:
        """QEMU's table of a configured VM's process (by its ``tgid``), if found."""
        if cfg.tgid is None:
            return None
        return next((t for t in self.tables if t.pid == cfg.tgid), None)

    def summary(self) -> dict[str, Any]:
        """The footer's ``provenance.damon`` (and the report's): intervals, rows, bytes."""
        targets = {}
        total: Counter[str] = Counter()
        for (monitor, index), p in sorted(self.targets.items()):
            entry: dict[str, Any] = {"vm": p.name if p.vm is not None else None}
            if p.vm is None:
                entry["why_not_placed"] = p.name
            entry.update(sorted(p.counts.items()))
            targets[f"{monitor} target {index}"] = entry
            total.update(p.counts)
        sources = {v["source"] for v in self.intervals_seen.values()}
        return {
            "intervals": self.intervals_seen,
            "intervals_source": sources.pop() if len(sources) == 1 else "mixed",
            "region_rows": total["rows"],
            "regions": total["regions"],
            "bytes": total["bytes"],
            "bytes_placed": total["bytes_placed"],
            "bytes_outside_memslots": total["bytes_outside"],
            "targets": targets,
            "memslot_tables": [
                {"source": t.source, "lines": t.lines, "slots": len(t.slots())}
                for t in self._tables or []
            ],
            **{k.replace(" ", "_"): v for k, v in sorted(self.notes.items()) if k[0] != "D"},
            "aggregations_cut_short": self.notes[CUT_SHORT],
        }


def _config_task(cfg: VmConfig) -> Task:
    from replay.convert.layout import Task

    return Task(cfg.name, cfg.threads[0] if cfg.threads else (cfg.tgid or 0), cfg.tgid)


@dataclass(frozen=True)
class Observed:
    """Regions of one target over one stretch of lines (the same intervals), as columns."""

    t: np.ndarray
    line: np.ndarray
    start: np.ndarray
    end: np.ndarray
    nacc: np.ndarray
    age: np.ndarray


def emit_regions(
    rows: Rows,
    placer: DamonPlacer,
    report: ConvertReport,
    placement: Placement,
    obs: Observed,
    intervals: Intervals,
    bad: Callable[[int, str, str], None],
    name: str,
) -> None:
    """Rows of one target's regions (already grouped and checked for overlap), and counts.

    ``bad`` counts (and quotes) a skipped line; ``name`` is the input's name in messages.
    """
    from replay.trace.schema import EVENT_CODE

    counts = placement.counts
    if placement.vm is None:
        report.skipped[f"damon_aggregated of a target that is no VM ({placement.name})"] += len(
            obs.t
        )
        counts["regions_skipped"] += len(obs.t)
        return
    too_many = obs.nacc > np.uint64(intervals.max_accesses)
    if too_many.any():
        k = int(np.flatnonzero(too_many)[0])
        raise LogFormatError(
            f"{name}:{int(obs.line[k])}: nr_accesses {int(obs.nacc[k])} past the "
            f"{intervals.max_accesses} sampling checks an aggregation of "
            f"{intervals.aggr_us} µs at {intervals.sample_us} µs holds "
            f"(intervals from the {intervals.source}): give the monitor's own intervals "
            "with --damon-intervals SAMPLE_US,AGGR_US"
        )
    good = aligned(obs.start, obs.end)
    if not good.all():
        _quote(report, bad, obs.line[~good], "DAMON region not on page bounds (or empty)")
        obs = Observed(*(a[good] for a in vars(obs).values()))
    pieces = place(obs.start, obs.end, placement.slots)
    size = obs.end - obs.start
    counts["regions"] += len(obs.t)
    counts["bytes"] += int(size.sum())
    counts["bytes_outside"] += int(pieces.outside.sum())
    counts["bytes_placed"] += int(pieces.length.sum())
    counts["rows"] += len(pieces.region)
    r = pieces.region
    if not len(r):
        return
    placer.registry.note_gpas(np.full(len(r), placement.vm, dtype=np.int64), pieces.gpa)
    rows.add(
        len(r),
        t_ns=obs.t[r],
        line=obs.line[r],
        event=EVENT_CODE["region"],
        vm=placement.vm,
        gpa=pieces.gpa,
        len=pieces.length,
        nr_accesses=obs.nacc[r].astype(np.int64),
        window_ns=intervals.aggr_us * 1000,
        sample_ns=intervals.sample_us * 1000,
        age=obs.age[r],
    )


def _quote(
    report: ConvertReport, bad: Callable[[int, str, str], None], lines: np.ndarray, reason: str
) -> None:
    """Count skipped lines by reason, quoting the first few (``--strict`` stops at one)."""
    for line in lines[:EXAMPLES].tolist():
        bad(int(line), "", reason)
    if len(lines) > EXAMPLES:
        report.skipped[reason] += len(lines) - EXAMPLES


def task_monitor(task: Task) -> str:
    """A kdamond's name in messages and the footer (``kdamond.0 (pid 107)``)."""
    return f"{task.comm} (pid {task.pid})"
