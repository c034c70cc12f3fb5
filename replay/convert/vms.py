"""Which VM and vCPU each event belongs to, and what the VMs look like.

A VM is one VMM process. It is found, in order of preference: from a ``--vm-config`` file
(thread group or thread ids per VM, with memslots, MMU mode and backing); from the thread group
id the log carries (ftrace with ``record-tgid``, ``perf script -F +pid``); else the whole log is
one VM (vCPU thread names such as ``CPU 3/KVM`` repeat across VMs, so they cannot tell VMs
apart). A vCPU is the event's own ``vcpu`` field, else the ``CPU n/KVM`` thread name, else one
vCPU per thread in order of first appearance. VMs get ids in order of first appearance, which
becomes ``vm_list`` (head first).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from replay._toml import read_memslot, read_toml
from replay.errors import ReplayError
from replay.trace.schema import MAX_GPA, MMU_MODES, PAGE_SHIFT, ROOT_LEVELS, Memslot, VmSpec

if TYPE_CHECKING:
    from pathlib import Path

    from replay._toml import TomlTable
    from replay.convert.hostmap import HostSlot
    from replay.convert.layout import Task

GiB = 1 << 30
MAX_VMS = 1 << 16
"""VM ids are 0..65535 (the trace's ``vm`` column is uint16)."""
MAX_VCPUS = 0xFFFF
"""A VM's vcpus are 1..65535, so a vCPU index is 0..65534 (the ``vcpu`` column is uint16)."""
MMIO_WINDOW = (0xFEC0_0000, 0x1_0000_0000)
"""IOAPIC, HPET, local APIC and firmware below 4 GiB: never RAM, never given an inferred slot."""


class VmConfigError(ReplayError):
    """A ``--vm-config`` file is missing, malformed, or names an unknown key or a bad value."""


@dataclass(frozen=True)
class SlotConfig:
    """A memslot of a configured VM, with where it sits in the VMM's address space."""

    slot: Memslot
    hva_start: int | None


@dataclass(frozen=True)
class VmConfig:
    """One VM of a ``--vm-config`` file."""

    name: str
    tgid: int | None
    threads: tuple[int, ...]
    vcpus: int | None
    mmu_mode: str
    root_level: int
    slots: tuple[SlotConfig, ...]
    damon_target: int | None = None
    """The DAMON target index of this VM's VMM process (``damon_target = N``)."""


VM_KEYS = frozenset(
    {"name", "tgid", "threads", "vcpus", "mmu_mode", "root_level", "memslots", "damon_target"}
)


def load_vm_config(path: Path, default_mmu: str | None = None) -> list[VmConfig]:
    """Read a ``--vm-config`` TOML file (format in the README's convert section)."""
    root = read_toml(path, "vm config", VmConfigError)
    root.check_keys({"mmu_mode", "root_level", "vm"}, {"vm"})
    mmu = root.choice("mmu_mode", MMU_MODES, default_mmu or "tdp_mmu")
    root_level = root.integer("root_level", 4, lo=min(ROOT_LEVELS), hi=max(ROOT_LEVELS))
    out = [_vm_config(t, mmu, root_level) for t in root.tables("vm")]
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise root.file.fail("[[vm]]", f"VM name {dup!r} is used twice; give each VM its own name")
    _check_owners(out, root)
    targets = [v.damon_target for v in out if v.damon_target is not None]
    if len(set(targets)) != len(targets):
        twice = next(n for n in targets if targets.count(n) > 1)
        raise root.file.fail(
            "[[vm]]",
            f"damon_target = {twice} is given to two VMs; a DAMON "
            "target is one process: fix one of them",
        )
    if len(out) > MAX_VMS:
        raise root.file.fail("[[vm]]", f"{len(out):,} VMs; a trace holds at most {MAX_VMS:,}")
    return out


def _check_owners(configs: list[VmConfig], root: TomlTable) -> None:
    """Refuse a process or a thread given to two VMs: its events could not be placed."""
    owner: dict[tuple[str, int], str] = {}
    for cfg in configs:
        ids = [("tgid", cfg.tgid)] if cfg.tgid is not None else []
        for key in ids + [("thread", t) for t in cfg.threads]:
            first = owner.setdefault((key[0], int(key[1])), cfg.name)
            if first != cfg.name:
                raise root.file.fail(
                    "[[vm]]",
                    f"VMs {first!r} and {cfg.name!r} both have {key[0]} {key[1]}; a process "
                    "or thread belongs to one VM: fix one of them",
                )


def _vm_config(t: TomlTable, mmu: str, root_level: int) -> VmConfig:
    """One ``[[vm]]`` table."""
    t.check_keys(VM_KEYS, {"name"})
    name = t.text("name", nonempty=True)
    tgid = t.integer("tgid", lo=1) if "tgid" in t else None
    threads = t.integers("threads", [], lo=1)
    if tgid is None and not threads:
        raise t.fail("give tgid (the VMM's process id) or threads (its thread ids)")
    vm_mmu = t.choice("mmu_mode", MMU_MODES, mmu)
    vm_root = t.integer("root_level", root_level, lo=min(ROOT_LEVELS), hi=max(ROOT_LEVELS))
    vcpus = t.integer("vcpus", lo=1, hi=MAX_VCPUS) if "vcpus" in t else None
    slots = []
    for s in t.tables("memslots", [], nonempty=False):
        slot = read_memslot(s, extra_keys={"hva_start"})
        hva_start = s.size("hva_start", positive=False) if "hva_start" in s else None
        slots.append(SlotConfig(slot, hva_start))
    _check_slots(t, name, vm_root, [s.slot for s in slots])
    target = t.integer("damon_target", lo=0) if "damon_target" in t else None
    return VmConfig(name, tgid, threads, vcpus, vm_mmu, vm_root, tuple(slots), target)


def _check_slots(t: TomlTable, name: str, root_level: int, slots: list[Memslot]) -> None:
    """Refuse memslots a trace could not hold: overlapping, or past what the root level maps.

    The same rules as the trace reader's (:func:`replay.trace.schema.check_vm`), checked here
    so that a conversion fails on the config, naming its VM, before reading any log.
    """
    reach = 1 << (PAGE_SHIFT + 9 * root_level)
    for i, slot in enumerate(slots):
        if slot.gpa_end > reach:
            raise t.fail(
                f"memslots[{i}] of VM {name!r} ends at {slot.gpa_end:#x}, beyond the "
                f"{reach:#x} bytes a {root_level}-level root maps; move it lower or give "
                "root_level = 5"
            )
    ordered = sorted(range(len(slots)), key=lambda i: slots[i].gpa_start)
    for a, b in itertools.pairwise(ordered):
        if slots[b].gpa_start < slots[a].gpa_end:
            raise t.fail(
                f"memslots[{a}] and memslots[{b}] of VM {name!r} overlap (at "
                f"{slots[b].gpa_start:#x}); give each slot its own range"
            )


@dataclass
class _Vm:
    key: Any
    name: str
    config: VmConfig | None
    first_t: int
    vcpu_of_thread: dict[int, int] = field(default_factory=dict)
    max_vcpu: int = -1
    gfn_ranges: set[int] = field(default_factory=set)
    """1 GiB regions (gpa >> 30) its accesses touched, for inferred memslots."""
    host_slots: list[HostSlot] = field(default_factory=list)
    """Memslots with host addresses that placed DAMON regions (QEMU's trace or the config)."""
    table_only: bool = False
    """A VMM known only by its memslot table (no process id): the one VM of the logs, if the
    kvm log has exactly one (:meth:`VmRegistry.remap`)."""


class VmRegistry:
    """Threads to VMs and vCPUs, as the events come."""

    def __init__(self, configs: list[VmConfig], default_mmu: str) -> None:
        self.configs = configs
        self.default_mmu = default_mmu
        self.by_tgid = {c.tgid: c for c in configs if c.tgid is not None}
        self.by_thread = {t: c for c in configs for t in c.threads}
        self.vms: list[_Vm] = []
        self._index: dict[Any, int] = {}
        self.identity: set[str] = set()
        """How VMs were told apart: 'vm-config', 'tgid', 'single'."""
        self.unconfigured: set[str] = set()
        self._limits = np.zeros(0, dtype=np.uint64)

    def vm_of(self, task: Task, t_ns: int, where: str = "") -> int:
        """The (provisional) VM index of a task's event; VMs are made on first sight.

        ``where`` (``file:line``) names the event in the error of a VM past the id space.
        """
        # A configured thread, a configured process, or its main thread (pid == tgid).
        config = (
            self.by_thread.get(task.pid)
            or (self.by_tgid.get(task.tgid) if task.tgid is not None else None)
            or self.by_tgid.get(task.pid)
        )
        if config is not None:
            key: Any = ("config", config.name)
            name = config.name
            self.identity.add("vm-config")
        elif task.tgid is not None:
            key = ("tgid", task.tgid)
            name = f"vm-{task.tgid}"
            self.identity.add("tgid")
            if self.configs:
                self.unconfigured.add(name)
        else:
            key = ("single",)
            name = "vm"
            self.identity.add("single")
            if self.configs:
                self.unconfigured.add(f"thread {task.comm}-{task.pid}")
        idx = self._index.get(key)
        if idx is None:
            if len(self.vms) >= MAX_VMS:
                # A trace's VM ids are 0..65535: a conversion that cannot number every VM
                # fails here rather than writing a trace its reader refuses.
                raise VmConfigError(
                    f"{where or 'log'}: {name} would be VM number {MAX_VMS + 1:,}; a trace "
                    f"holds at most {MAX_VMS:,} VMs (thread groups): convert fewer processes' "
                    "events at once, or give --vm-config naming the VMs"
                )
            idx = len(self.vms)
            self._index[key] = idx
            self.vms.append(_Vm(key, name, config, t_ns))
        elif t_ns < self.vms[idx].first_t:
            self.vms[idx].first_t = t_ns
        return idx

    def mark_table_only(self, vm: int) -> None:
        """VM ``vm`` is a VMM known only by its memslot table (see :meth:`remap`)."""
        self.vms[vm].table_only = True

    def note_host_slots(self, vm: int, slots: list[HostSlot]) -> None:
        """The memslots (with host addresses) DAMON regions of VM ``vm`` were placed with."""
        if not self.vms[vm].host_slots:
            self.vms[vm].host_slots = list(slots)

    def _alias(self) -> dict[int, int]:
        """A VMM known only by its memslot table, and the one other VM of the logs: the same."""
        holders = [i for i, v in enumerate(self.vms) if v.table_only]
        others = [i for i, v in enumerate(self.vms) if not v.table_only]
        if len(holders) == 1 and len(others) == 1:
            a, b = holders[0], others[0]
            cfg = self.vms[b].config
            if cfg is not None and cfg.slots:
                inside = {(s.slot.gpa_start, s.slot.size) for s in cfg.slots}
                if any((h.gpa, h.size) not in inside for h in self.vms[a].host_slots):
                    return {}  # QEMU's memslots are not the config's: not shown to be one VM
            elif not self.vms[b].host_slots:
                self.vms[b].host_slots = self.vms[a].host_slots
            self.vms[b].gfn_ranges |= self.vms[a].gfn_ranges
            self.vms[b].first_t = min(self.vms[a].first_t, self.vms[b].first_t)
            return {a: b}
        return {}

    def remap(self) -> np.ndarray:
        """Provisional VM indices to the trace's VM ids (order of first appearance)."""
        order = self.final_order()
        out = np.zeros(len(self.vms), dtype=np.int64)
        out[np.array(order, dtype=np.int64)] = np.arange(len(order))
        for a, b in self._alias().items():
            out[a] = out[b]
        return out

    def unmap_hits(self, start: int, end: int) -> list[tuple[VmConfig, SlotConfig, int, int]]:
        """The configured memslots a host range ``[start, end)`` overlaps, with the overlap."""
        hits = []
        for cfg in self.configs:
            for s in cfg.slots:
                if s.hva_start is None:
                    continue
                lo, hi = max(start, s.hva_start), min(end, s.hva_start + s.slot.size)
                if lo < hi:
                    hits.append((cfg, s, lo, hi))
        return hits

    def gpa_limits(self) -> np.ndarray:
        """Per VM (provisional index), the first address its paging cannot map (uint64).

        2**52 (no x86-64 guest is larger; a 5-level root is inferred when needed), or the
        reach of the root level a ``--vm-config`` gives.
        """
        if len(self._limits) != len(self.vms):
            self._limits = np.array(
                [
                    MAX_GPA if v.config is None else 1 << (PAGE_SHIFT + 9 * v.config.root_level)
                    for v in self.vms
                ],
                dtype=np.uint64,
            )
        return self._limits

    def vcpu_of(self, vm: int, task: Task, field_vcpu: int | None) -> int:
        """The vCPU index: the event's field, else the thread name, else order of appearance."""
        v = self.vms[vm]
        vcpu = field_vcpu if field_vcpu is not None else v.vcpu_of_thread.get(task.pid)
        if vcpu is None:
            vcpu = task.vcpu_from_name
            if vcpu is not None and vcpu >= MAX_VCPUS:
                vcpu = None  # a thread name no vCPU can have: numbered in order instead
        if vcpu is None:
            taken = set(v.vcpu_of_thread.values())
            vcpu = next(i for i in range(len(taken) + 1) if i not in taken)
        if vcpu >= MAX_VCPUS:
            # Fields past the limit are skipped by the converter: this is 65,535 threads of
            # one VM numbered in order of appearance.
            raise VmConfigError(
                f"VM {v.name}: thread {task.comm}-{task.pid} would be vCPU {vcpu:,}; a VM has "
                f"at most {MAX_VCPUS:,} vCPUs: give --vm-config naming its threads"
            )
        v.vcpu_of_thread.setdefault(task.pid, vcpu)
        v.max_vcpu = max(v.max_vcpu, vcpu)
        return vcpu

    def note_gpas(self, vm: np.ndarray, gpa: np.ndarray) -> None:
        """Remember which 1 GiB regions each VM's accesses fall in (for inferred memslots)."""
        if not len(vm):
            return
        region = (np.asarray(gpa, dtype=np.uint64) >> np.uint64(30)).astype(np.int64)
        top = int(region.max()) + 1
        if top <= 1 << 16:
            # Few VMs and regions: count (vm, region) pairs instead of sorting them.
            seen = np.flatnonzero(np.bincount(vm.astype(np.int64) * top + region))
            pairs = zip((seen // top).tolist(), (seen % top).tolist(), strict=True)
        else:
            both = np.unique(np.stack([vm.astype(np.int64), region]), axis=1)
            pairs = zip(both[0].tolist(), both[1].tolist(), strict=True)
        for v, r in pairs:
            self.vms[v].gfn_ranges.add(r)

    def final_order(self) -> list[int]:
        """Provisional VM indices in order of first appearance in time (aliases left out)."""
        alias = self._alias()
        live = [i for i in range(len(self.vms)) if i not in alias]
        return sorted(live, key=lambda i: (self.vms[i].first_t, i))

    def specs(self, mmu_override: str | None) -> tuple[list[VmSpec], list[tuple[str, str]]]:
        """The trace's VM table (ids in order of first appearance) and what was inferred.

        Each note is (kind, text): ``memslots_inferred`` or ``vm_without_events``.
        """
        notes = []
        specs = []
        for new_id, i in enumerate(self.final_order()):
            v = self.vms[i]
            cfg = v.config
            vcpus = max(v.max_vcpu + 1, cfg.vcpus if cfg and cfg.vcpus else 1)
            if cfg is not None and cfg.slots:
                slots = tuple(replace(s.slot, hva_start=s.hva_start) for s in cfg.slots)
            elif v.host_slots:
                slots = tuple(Memslot(s.gpa, s.size, "4k", False, s.hva) for s in v.host_slots)
            else:
                slots = inferred_slots(v.gfn_ranges)
                what = (
                    f"inferred from the faulting addresses: {len(slots)} slot(s) of whole GiB"
                    if v.gfn_ranges
                    else "unknown (no faults seen): one 1 GiB slot at 0 assumed"
                )
                notes.append(
                    (
                        "memslots_inferred",
                        f"VM {v.name}: memslots {what}, backing 4k; give --vm-config for the "
                        "real layout",
                    )
                )
            mmu = mmu_override or (cfg.mmu_mode if cfg else self.default_mmu)
            root = cfg.root_level if cfg else 4
            if slots[-1].gpa_end > 1 << (PAGE_SHIFT + 9 * root):
                # Faults past 2**48 (the converter keeps only those below 2**52): only a
                # 5-level root maps them (MAXPHYADDR 52).
                root = 5
                notes.append(
                    (
                        "root_guessed",
                        f"VM {v.name}: faults above 2**48, so a 5-level root is assumed",
                    )
                )
            specs.append(VmSpec(new_id, v.name, vcpus, mmu, root, slots))
        seen = {v.name for v in self.vms}
        for cfg in self.configs:
            if cfg.name not in seen:
                # Declared but silent in the log: listed after the VMs that were seen.
                slots = tuple(
                    replace(s.slot, hva_start=s.hva_start) for s in cfg.slots
                ) or inferred_slots(set())
                mmu = mmu_override or cfg.mmu_mode
                specs.append(
                    VmSpec(len(specs), cfg.name, cfg.vcpus or 1, mmu, cfg.root_level, slots)
                )
                notes.append(
                    ("vm_without_events", f"VM {cfg.name} of --vm-config has no event in the log")
                )
        return specs, notes


def inferred_slots(regions: set[int]) -> tuple[Memslot, ...]:
    """One 4k-backed slot per run of touched 1 GiB regions, leaving out the MMIO window."""
    slots: list[Memslot] = []
    for region in sorted(regions):
        lo, hi = region * GiB, (region + 1) * GiB
        if lo < MMIO_WINDOW[0] < hi:
            hi = MMIO_WINDOW[0]  # the GiB below 4 GiB keeps only its part below the window
        if slots and slots[-1].gpa_end == lo:
            last = slots.pop()
            slots.append(Memslot(last.gpa_start, hi - last.gpa_start, "4k", False))
        else:
            slots.append(Memslot(lo, hi - lo, "4k", False))
    if not slots:
        slots.append(Memslot(0, GiB, "4k", False))
    return tuple(slots)
