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

import tomllib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.errors import ReplayError
from replay.synth.scenario import TableReader
from replay.trace.schema import MMU_MODES, ROOT_LEVELS, Memslot, VmSpec

if TYPE_CHECKING:
    from pathlib import Path

    from replay.convert.layout import Task

GiB = 1 << 30
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


class _ConfigReader(TableReader):
    what = "vm config"
    error = VmConfigError

    def read(self, doc: dict[str, Any], default_mmu: str | None) -> list[VmConfig]:
        self.keys(doc, "top level", {"mmu_mode", "root_level", "vm"}, {"vm"})
        mmu = doc.get("mmu_mode", default_mmu or "tdp_mmu")
        if mmu not in MMU_MODES:
            raise self.fail("top level", f"mmu_mode {mmu!r} must be one of {', '.join(MMU_MODES)}")
        root = doc.get("root_level", 4)
        tables = doc["vm"]
        if not isinstance(tables, list) or not tables:
            raise self.fail("[[vm]]", "give at least one [[vm]] table")
        out = []
        for i, t in enumerate(tables):
            where = f"[[vm]] #{i + 1}"
            self.keys(
                t,
                where,
                {"name", "tgid", "threads", "vcpus", "mmu_mode", "root_level", "memslots"},
                {"name"},
            )
            name = t["name"]
            if not isinstance(name, str) or not name:
                raise self.fail(where, "name must be a non-empty string")
            tgid = self.integer(t["tgid"], where, "tgid", lo=1) if "tgid" in t else None
            threads = t.get("threads", [])
            if not isinstance(threads, list):
                raise self.fail(where, "threads must be a list of thread ids")
            thread_ids = tuple(self.integer(x, where, "threads", lo=1) for x in threads)
            if tgid is None and not thread_ids:
                raise self.fail(
                    where, "give tgid (the VMM's process id) or threads (its thread ids)"
                )
            vm_mmu = t.get("mmu_mode", mmu)
            if vm_mmu not in MMU_MODES:
                raise self.fail(where, f"mmu_mode {vm_mmu!r} must be one of {', '.join(MMU_MODES)}")
            vm_root = self.integer(t.get("root_level", root), where, "root_level", lo=4, hi=5)
            if vm_root not in ROOT_LEVELS:
                raise self.fail(where, f"root_level must be one of {ROOT_LEVELS}")
            vcpus = self.integer(t["vcpus"], where, "vcpus", lo=1) if "vcpus" in t else None
            slots = []
            for j, s in enumerate(t.get("memslots", [])):
                sw = f"{where} memslots[{j}]"
                if not isinstance(s, dict):
                    raise self.fail(sw, "must be a table")
                hva = s.get("hva_start")
                rest = {k: v for k, v in s.items() if k != "hva_start"}
                slot = self.memslot(rest, sw)
                hva_start = None if hva is None else self.size(hva, sw, "hva_start", positive=False)
                slots.append(SlotConfig(slot, hva_start))
            out.append(VmConfig(name, tgid, thread_ids, vcpus, vm_mmu, vm_root, tuple(slots)))
        names = [v.name for v in out]
        if len(set(names)) != len(names):
            raise self.fail("[[vm]]", "two VMs have the same name")
        return out


def load_vm_config(path: Path, default_mmu: str | None = None) -> list[VmConfig]:
    """Read a ``--vm-config`` TOML file (format in the README's convert section)."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise VmConfigError(f"vm config {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VmConfigError(f"vm config {path} cannot be read ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise VmConfigError(f"vm config {path}: not valid TOML ({exc})") from None
    return _ConfigReader(path).read(doc, default_mmu)


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

    def vm_of(self, task: Task, t_ns: int) -> int:
        """The (provisional) VM index of a task's event; VMs are made on first sight."""
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
            idx = len(self.vms)
            self._index[key] = idx
            self.vms.append(_Vm(key, name, config, t_ns))
        elif t_ns < self.vms[idx].first_t:
            self.vms[idx].first_t = t_ns
        return idx

    def vcpu_of(self, vm: int, task: Task, field_vcpu: int | None) -> int:
        """The vCPU index: the event's field, else the thread name, else order of appearance."""
        v = self.vms[vm]
        vcpu = field_vcpu if field_vcpu is not None else v.vcpu_of_thread.get(task.pid)
        if vcpu is None:
            vcpu = task.vcpu_from_name
        if vcpu is None:
            taken = set(v.vcpu_of_thread.values())
            vcpu = next(i for i in range(len(taken) + 1) if i not in taken)
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
        """Provisional VM indices in order of first appearance in time."""
        return sorted(range(len(self.vms)), key=lambda i: (self.vms[i].first_t, i))

    def specs(self, mmu_override: str | None) -> tuple[list[VmSpec], list[str]]:
        """The trace's VM table (ids in order of first appearance) and what was inferred."""
        notes = []
        specs = []
        for new_id, i in enumerate(self.final_order()):
            v = self.vms[i]
            cfg = v.config
            vcpus = max(v.max_vcpu + 1, cfg.vcpus if cfg and cfg.vcpus else 1)
            if cfg is not None and cfg.slots:
                slots = tuple(s.slot for s in cfg.slots)
            else:
                slots = inferred_slots(v.gfn_ranges)
                what = (
                    f"inferred from the faulting addresses: {len(slots)} slot(s) of whole GiB"
                    if v.gfn_ranges
                    else "unknown (no faults seen): one 1 GiB slot at 0 assumed"
                )
                notes.append(
                    f"VM {v.name}: memslots {what}, backing 4k; give --vm-config for the "
                    "real layout"
                )
            mmu = mmu_override or (cfg.mmu_mode if cfg else self.default_mmu)
            root = cfg.root_level if cfg else 4
            specs.append(VmSpec(new_id, v.name, vcpus, mmu, root, slots))
        seen = {v.name for v in self.vms}
        for cfg in self.configs:
            if cfg.name not in seen:
                # Declared but silent in the log: listed after the VMs that were seen.
                slots = tuple(s.slot for s in cfg.slots) or inferred_slots(set())
                mmu = mmu_override or cfg.mmu_mode
                specs.append(
                    VmSpec(len(specs), cfg.name, cfg.vcpus or 1, mmu, cfg.root_level, slots)
                )
                notes.append(f"VM {cfg.name} of --vm-config has no event in the log")
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
