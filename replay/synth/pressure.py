"""The host's side of a scenario: reclaim passes, shrinker calls, unmaps and zaps, as events.

These events are few next to the accesses (thousands, not millions), so they are built once, as
whole sorted arrays, and merged into the access stream window by window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from replay.trace.schema import EVENT_CODE, PAGE_SIZE, PRIORITY_MAX, SOURCE_CODE

if TYPE_CHECKING:
    from replay.synth.scenario import PressurePlan, Scenario, VmPlan

DEF_PRIORITY = PRIORITY_MAX
"""Reclaim starts every pass sequence at priority 12 (``DEF_PRIORITY``)."""


@dataclass(frozen=True)
class HostEvents:
    """Host events sorted by time; columns that an event kind does not use hold 0."""

    t_ns: np.ndarray
    event: np.ndarray
    vm: np.ndarray
    gpa: np.ndarray
    len: np.ndarray
    source: np.ndarray
    priority: np.ndarray
    nid: np.ndarray
    nr_to_scan: np.ndarray

    def __len__(self) -> int:
        return len(self.t_ns)

    def slice(self, lo: int, hi: int) -> HostEvents:
        """Rows ``lo:hi``."""
        return HostEvents(*(getattr(self, f)[lo:hi] for f in self.__dataclass_fields__))


class _Rows:
    """Accumulates host events as Python lists, one entry at a time (there are few)."""

    def __init__(self) -> None:
        self.cols: dict[str, list[int]] = {f: [] for f in HostEvents.__dataclass_fields__}

    def add(self, t_ns: int, event: str, **fields: int) -> None:
        self.cols["t_ns"].append(t_ns)
        self.cols["event"].append(EVENT_CODE[event])
        for name in ("vm", "gpa", "len", "source", "priority", "nid", "nr_to_scan"):
            self.cols[name].append(fields.get(name, 0))

    def build(self) -> HostEvents:
        dtypes = {
            "t_ns": np.int64,
            "event": np.int8,
            "vm": np.uint16,
            "gpa": np.uint64,
            "len": np.uint64,
            "source": np.int8,
            "priority": np.int8,
            "nid": np.int16,
            "nr_to_scan": np.uint32,
        }
        arrays = {k: np.asarray(v, dtype=dtypes[k]) for k, v in self.cols.items()}
        # Rule 17: ties keep file order; a stable sort keeps the scenario's entry order.
        order = np.argsort(arrays["t_ns"], kind="stable")
        return HostEvents(**{k: a[order] for k, a in arrays.items()})


def host_events(scenario: Scenario, vm_ids: dict[str, int], rng: np.random.Generator) -> HostEvents:
    """Expand every ``[[pressure]]`` entry into events inside ``[0, duration)``."""
    rows = _Rows()
    end_ns = int(scenario.duration_s * 1e9)
    for plan in scenario.pressure:
        targets = [v for v in scenario.vms if plan.vm in ("all", v.name, v.group)]
        for i, t_s in enumerate(plan.times_s):
            t_ns = round(t_s * 1e9)
            if t_ns >= end_ns:
                break
            _occurrence(rows, plan, i, t_ns, targets, vm_ids, rng)
    events = rows.build()
    keep = int(np.searchsorted(events.t_ns, end_ns, side="left"))
    return events.slice(0, keep)


def _passes(rows: _Rows, plan: PressurePlan, t_ns: int, priority: int) -> None:
    """One shrink_slab pass on each node (rule 9: one ``reclaim`` event per pass and node)."""
    for nid in range(plan.nodes):
        rows.add(t_ns, "reclaim", source=SOURCE_CODE[plan.kind], priority=priority, nid=nid)


def _occurrence(
    rows: _Rows,
    plan: PressurePlan,
    index: int,
    t_ns: int,
    targets: list[VmPlan],
    vm_ids: dict[str, int],
    rng: np.random.Generator,
) -> None:
    gap_ns = int(plan.pass_interval_us * 1e3)
    match plan.kind:
        case "kswapd" | "memcg":
            # Periodic passes while the episode lasts; priority escalates from 12 towards
            # min_priority, one level every passes_per_priority passes, and stays there.
            priority = max(plan.min_priority, DEF_PRIORITY - index // plan.passes_per_priority)
            _passes(rows, plan, t_ns, priority)
        case "direct" | "proactive":
            # A burst: one allocation (or memory.reclaim write) lowering the priority from 12 to
            # min_priority, one pass per level, pass_interval_us apart.
            for step, priority in enumerate(range(DEF_PRIORITY, plan.min_priority - 1, -1)):
                _passes(rows, plan, t_ns + step * gap_ns, priority)
        case "drop_caches":
            # drop_slab(): priority 0 passes, repeated while the shrinkers keep freeing.
            for step in range(plan.repeats):
                _passes(rows, plan, t_ns + step * gap_ns, 0)
        case "shrink":
            rows.add(t_ns, "shrink", nr_to_scan=plan.nr_to_scan)
        case "zap_all":
            for vm in targets:
                rows.add(t_ns, "zap_all", vm=vm_ids[vm.name])
        case "unmap":
            vm = targets[int(rng.integers(len(targets)))]
            gpa, length = _unmap_range(vm, plan, rng)
            rows.add(t_ns, "unmap", vm=vm_ids[vm.name], gpa=gpa, len=length)
        case _:  # pragma: no cover - the scenario parser admits only the kinds above
            raise AssertionError(plan.kind)


def _unmap_range(vm: VmPlan, plan: PressurePlan, rng: np.random.Generator) -> tuple[int, int]:
    """A ``len``-aligned range inside the targeted part of the VM's RAM (memslots in order)."""
    ram = sum(s.size for s in vm.memslots)
    offset = min(plan.offset, ram - PAGE_SIZE)
    span = min(plan.footprint or ram, ram - offset)
    length = min(plan.len, span)
    slots = (span - length) // length + 1
    ram_offset = offset + int(rng.integers(slots)) * length
    for slot in vm.memslots:
        if ram_offset < slot.size:
            return slot.gpa_start + ram_offset, min(length, slot.size - ram_offset)
        ram_offset -= slot.size
    raise AssertionError("offset beyond the VM's RAM")  # pragma: no cover
