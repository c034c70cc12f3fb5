"""Render a trace as kernel trace text: the way back from ``replay convert``.

``replay synth SCENARIO --as ftrace|perf|trace-cmd -o FILE`` writes what the host would have
printed: each access as a ``kvm:kvm_page_fault`` line (VMX exit qualification: 0x181 read,
0x182 write, 0x184 fetch), each reclaim pass as ``vmscan:mm_shrink_slab_start/end`` lines (a
root-only shrinker and a memcg-aware one, so the pass is recognisable; direct and memcg passes
inside ``mm_vmscan_*_reclaim_begin/end``), each ``zap_all`` as ``kvmmmu:kvm_mmu_zap_all_fast``.
The lines follow the tracefs ``print fmt`` and each tool's line layout (see
traces/logs/README.md, "Line layouts").
Beside the log, ``FILE.vms.toml`` describes the VMs (thread ids, MMU mode, memslots) for
``replay convert --vm-config``. ``unmap`` and ``shrink`` events have no text that converts back
without a host address map, so they are counted and left out.

Each VM is a process with thread group id ``4000 + 100 * vm``; its vCPU ``c`` is the thread
``tgid + 1 + c`` named ``CPU c/KVM``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

import numpy as np

from replay._toml import toml_string
from replay.trace.schema import EVENT_CODE, OP_CODE, SOURCES

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from replay.trace.reader import EventBatch, TraceFile
    from replay.trace.schema import TraceMeta

LAYOUTS = ("ftrace", "perf", "trace-cmd")
HOST_CPUS = 8
RIP = "0xffffffffa1c3f2e6"
ERROR_CODE = {OP_CODE["read"]: "0x181", OP_CODE["write"]: "0x182", OP_CODE["exec"]: "0x184"}
"""VMX EPT exit qualifications: read / write / fetch of an unmapped GPA, guest-linear valid."""
PERF_EVENT_WIDTH = 30
"""perf right-aligns ``group:event`` to the longest name recorded: vmscan:mm_shrink_slab_start."""
TRACE_CMD_NAME_WIDTH = 22
"""trace-cmd pads ``event:`` to this many columns (at least one space follows)."""
ROOT_SHRINKER = ("kfree_rcu_shrink_scan", "0x0/0x120", "00000000f35b9c83", "0xffffffffb5a0c1e0")
MEMCG_SHRINKER = ("super_cache_scan", "0x0/0x210", "00000000df2fcf27", "0xffff9b6e41d2c800")
"""(symbol, ftrace offset/size, ftrace hashed pointer, perf raw pointer) of each shrinker."""


def tgid_of(vm: int) -> int:
    """The process id a rendered log gives VM ``vm``."""
    return 4000 + 100 * vm


@dataclass(frozen=True)
class Task:
    """A task a rendered line is printed by."""

    comm: str
    pid: int
    tgid: int


_HOST_TASKS = {
    "kswapd": Task("kswapd0", 98, 98),
    "direct": Task("stress-ng", 3100, 3100),
    "drop_caches": Task("bash", 3200, 3200),
    "proactive": Task("sh", 3300, 3300),
    "memcg": Task("postgres", 3400, 3400),
}


@dataclass
class RenderReport:
    """What a rendering wrote and left out."""

    lines: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)


def _head(task: Task, cpu: int, layout: str) -> str:
    """Everything before the time stamp."""
    if layout == "ftrace":
        return f"{task.comm:>16}-{task.pid:<7d} ({task.tgid:7d}) [{cpu:03d}] ..... "
    if layout == "perf":
        return f"{task.comm:>16} {task.tgid:5d}/{task.pid:<5d} [{cpu:03d}] "
    return f"{task.comm:>16}-{task.pid:<5d} [{cpu:03d}] "


def _event(name: str, group: str, layout: str) -> str:
    """The event column, ending with the space before the payload."""
    if layout == "perf":
        return f"{f'{group}:{name}':>{PERF_EVENT_WIDTH}}: "
    if layout == "trace-cmd":
        return f"{name + ':':<{TRACE_CMD_NAME_WIDTH}} "
    return f"{name}: "


def _seconds(t_ns: int, layout: str) -> str:
    """``%5lu.%06lu``; perf right-aligns it in 12; trace-cmd rounds to the µs."""
    us = (t_ns + 500) // 1000 if layout == "trace-cmd" else t_ns // 1000
    text = f"{us // 1_000_000:5d}.{us % 1_000_000:06d}"
    return f"{text:>12}" if layout == "perf" else text


def _line(task: Task, cpu: int, t_ns: int, name: str, group: str, payload: str, layout: str) -> str:
    head, stamp = _head(task, cpu, layout), _seconds(t_ns, layout)
    return f"{head}{stamp}: {_event(name, group, layout)}{payload}"


def _shrinker(which: tuple[str, str, str, str], layout: str) -> str:
    sym, size, hashed, raw = which
    if layout == "ftrace":
        return f"{sym}+{size} {hashed}"
    return f"{sym}+0x0 {raw}"


def _pass_lines(t: int, source: str, priority: int, nid: int, layout: str) -> list[str]:
    """One reclaim pass as the kernel prints it (see :mod:`replay.convert.passes`)."""
    task = _HOST_TASKS[source]
    cpu = task.pid % HOST_CPUS
    out = []

    def line(name: str, payload: str) -> None:
        out.append(_line(task, cpu, t, name, "vmscan", payload, layout))

    episode = {"direct": "direct", "memcg": "memcg", "proactive": "memcg"}.get(source)
    if episode:
        line(f"mm_vmscan_{episode}_reclaim_begin", "order=0 gfp_flags=GFP_HIGHUSER_MOVABLE")
    shrinkers = [MEMCG_SHRINKER] if source == "memcg" else [ROOT_SHRINKER, MEMCG_SHRINKER]
    for which in shrinkers:
        name = _shrinker(which, layout)
        line(
            "mm_shrink_slab_start",
            f"{name}: nid: {nid} objects to shrink 0 gfp_flags GFP_KERNEL cache items 1024 "
            f"delta 64 total_scan 64 priority {priority}",
        )
        line(
            "mm_shrink_slab_end",
            f"{name}: nid: {nid} unused scan count 0 new scan count 0 total_scan 0 "
            "last shrinker return val 64",
        )
    if episode:
        line(f"mm_vmscan_{episode}_reclaim_end", "nr_reclaimed=64")
    return out


def _hex16(values: np.ndarray) -> np.ndarray:
    """``%016llx`` of every value, as fixed-width byte strings (vectorized)."""
    digits = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)
    nibbles = (values.astype(np.uint64)[:, None] >> shifts[None, :]) & np.uint64(0xF)
    return np.ascontiguousarray(digits[nibbles.astype(np.int64)]).view("S16").ravel()


class _Renderer:
    def __init__(
        self, meta: TraceMeta, layout: str, out: TextIO, hva: Callable[[int, int], int] | None
    ) -> None:
        import polars as pl

        self.hva = hva
        """Host address of (VM id, gpa) where the VMs' memslots have one: unmaps render."""
        self.layout = layout
        self.out = out
        self.report = RenderReport()
        self.pl = pl
        # The head (task and CPU columns) of every (vm, vcpu), looked up per access.
        self.vcpu_base: dict[int, int] = {}
        heads: list[str] = []
        for vm in meta.vms:
            self.vcpu_base[vm.id] = len(heads)
            tgid = tgid_of(vm.id)
            for c in range(vm.vcpus):
                task = Task(f"CPU {c}/KVM", tgid + 1 + c, tgid)
                heads.append(_head(task, (tgid + c) % HOST_CPUS, layout))
        self.heads = pl.Series(heads, dtype=pl.String)
        self.base = np.zeros(max(self.vcpu_base, default=0) + 1, dtype=np.int64)
        for vm_id, base in self.vcpu_base.items():
            self.base[vm_id] = base
        self.fault_event = _event("kvm_page_fault", "kvm", layout)

    def seconds(self, t_ns: np.ndarray) -> Any:
        pl = self.pl
        us = (t_ns + 500) // 1000 if self.layout == "trace-cmd" else t_ns // 1000
        sec = pl.Series(us // 1_000_000).cast(pl.String).str.pad_start(5)
        frac = pl.Series(us % 1_000_000).cast(pl.String).str.zfill(6)
        text = sec + "." + frac
        return text.str.pad_start(12) if self.layout == "perf" else text

    def accesses(self, batch: EventBatch, rows: np.ndarray) -> Any:
        pl = self.pl
        vm = batch.vm[rows].astype(np.int64)
        vcpu = batch.vcpu[rows].astype(np.int64)
        head = self.heads.gather(self.base[vm] + vcpu)
        gpa = pl.Series(_hex16(batch.gpa[rows])).cast(pl.String)
        op = batch.op[rows]
        code = pl.Series(
            np.where(
                op == OP_CODE["write"],
                ERROR_CODE[OP_CODE["write"]],
                np.where(
                    op == OP_CODE["exec"], ERROR_CODE[OP_CODE["exec"]], ERROR_CODE[OP_CODE["read"]]
                ),
            )
        )
        return (
            head
            + self.seconds(batch.t_ns[rows].astype(np.int64))
            + ": "
            + self.fault_event
            + "vcpu "
            + pl.Series(vcpu).cast(pl.String)
            + f" rip {RIP} address 0x"
            + gpa
            + " error_code "
            + code
        )

    def batch(self, batch: EventBatch) -> None:
        n = len(batch)
        if not n:
            return
        is_access = batch.event == EVENT_CODE["access"]
        access_rows = np.flatnonzero(is_access)
        lines: list[str] = []
        texts = self.accesses(batch, access_rows).to_list() if len(access_rows) else []
        host_rows = np.flatnonzero(~is_access)
        # Interleave in trace order: accesses run between host events.
        a = 0
        for r in host_rows.tolist():
            cut = int(np.searchsorted(access_rows, r))
            lines.extend(texts[a:cut])
            a = cut
            lines.extend(self.host(batch, r))
        lines.extend(texts[a:])
        self.report.rows["access"] = self.report.rows.get("access", 0) + len(access_rows)
        self.report.lines += len(lines)
        self.out.write("\n".join(lines))
        self.out.write("\n")

    def host(self, batch: EventBatch, r: int) -> list[str]:
        kind = int(batch.event[r])
        t = int(batch.t_ns[r])
        name = next(k for k, v in EVENT_CODE.items() if v == kind)
        self.report.rows[name] = self.report.rows.get(name, 0) + 1
        if kind == EVENT_CODE["reclaim"]:
            source = SOURCES[int(batch.source[r])]
            return _pass_lines(t, source, int(batch.priority[r]), int(batch.nid[r]), self.layout)
        if kind == EVENT_CODE["zap_all"]:
            vm = int(batch.vm[r])
            task = Task("qemu-system-x86", tgid_of(vm), tgid_of(vm))
            return [
                _line(
                    task,
                    task.pid % HOST_CPUS,
                    t,
                    "kvm_mmu_zap_all_fast",
                    "kvmmmu",
                    "kvm-mmu-valid-gen 1 used_pages 0",
                    self.layout,
                )
            ]
        if kind == EVENT_CODE["unmap"] and self.hva is not None:
            # kvm_unmap_hva_range prints the host range [start, end) the notifier invalidates.
            start = self.hva(int(batch.vm[r]), int(batch.gpa[r]))
            end = start + ((int(batch.len[r]) + 4095) & ~4095)
            payload = f"mmu notifier unmap range: {start:#016x} -- {end:#016x}"
            return [
                _line(
                    _HOST_TASKS["kswapd"], 0, t, "kvm_unmap_hva_range", "kvm", payload, self.layout
                )
            ]
        self.report.rows[name] -= 1
        self.report.left_out[name] = self.report.left_out.get(name, 0) + 1
        return []


def header(layout: str, meta: TraceMeta) -> list[str]:
    """The lines a tool prints before the events."""
    if layout == "trace-cmd":
        return [f"cpus={HOST_CPUS}"]
    if layout == "ftrace":
        return [
            "# tracer: nop",
            "#",
            "# entries-in-buffer/entries-written: 0/0   #P:8",
            "#",
            "#                                          _-----=> irqs-off/BH-disabled",
            "#                                         / _----=> need-resched",
            "#                                        | / _---=> hardirq/softirq",
            "#                                        || / _--=> preempt-depth",
            "#                                        ||| / _-=> migrate-disable",
            "#                                        |||| /     delay",
            "#           TASK-PID     TGID     CPU#  |||||  TIMESTAMP  FUNCTION",
            "#              | |         |        |   |||||     |         |",
        ]
    return []


def vm_config_text(meta: TraceMeta) -> str:
    """A ``--vm-config`` file describing the rendered VMs."""
    lines = ["# VMs of a log rendered by replay synth --as; for replay convert --vm-config", ""]
    for vm in meta.vms:
        tgid = tgid_of(vm.id)
        threads = ", ".join(str(tgid + 1 + c) for c in range(vm.vcpus))
        lines += [
            "[[vm]]",
            f"name = {toml_string(vm.name)}",  # any text a footer holds, read back as is
            f"tgid = {tgid}",
            f"threads = [{threads}]",
            f"vcpus = {vm.vcpus}",
            f"mmu_mode = {toml_string(vm.mmu_mode)}",
            f"root_level = {vm.root_level}",
        ]
        for slot in vm.memslots:
            lines += [
                "[[vm.memslots]]",
                f"gpa_start = {slot.gpa_start:#x}",
                f"size = {slot.size:#x}",
                f"backing = {toml_string(slot.backing)}",
                f"dirty_log = {'true' if slot.dirty_log else 'false'}",
            ]
        lines.append("")
    return "\n".join(lines)


def render_trace(
    trace: TraceFile,
    layout: str,
    out: Path,
    *,
    force: bool = True,
    hva: Callable[[int, int], int] | None = None,
) -> RenderReport:
    """Write ``trace`` as ``layout`` text to ``out``, its VM table to ``out.vms.toml``.

    Both are written atomically; without ``force`` neither replaces a file that exists. With
    ``hva`` (the host address of a VM's gpa), ``unmap`` events render as
    ``kvm_unmap_hva_range`` lines, which ``replay convert`` places through the memslots'
    ``hva_start``.
    """
    from replay.atomic import atomic_output
    from replay.trace.reader import iter_batches

    config = out.with_name(out.name + ".vms.toml")
    with atomic_output(out, "log", force=force) as tmp, tmp.open("w", encoding="utf-8") as fh:
        renderer = _Renderer(trace.meta, layout, fh, hva)
        head = header(layout, trace.meta)
        if head:
            fh.write("\n".join(head) + "\n")
            renderer.report.lines += len(head)
        for batch in iter_batches(trace):
            renderer.batch(batch)
        fh.flush()
        with atomic_output(config, "vm config", force=force) as tmp_config:
            tmp_config.write_text(vm_config_text(trace.meta), encoding="utf-8")
    return renderer.report
