"""Rows and counters of the kernel's own events: shadow pages, unmaps, reclaim passes.

A mixin of :class:`.converter.FileConverter`, kept apart so that each module stays short.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

from replay.convert.layout import Task
from replay.trace.schema import EVENT_CODE, SOURCE_CODE

if TYPE_CHECKING:
    from replay.convert.passes import Pass
    from replay.convert.report import ConvertReport
    from replay.convert.rows import Rows
    from replay.convert.vms import VmRegistry


class KernelRows:
    """Shadow page counters, ``unmap`` rows and ``reclaim`` rows of one log."""

    name: str
    report: ConvertReport
    registry: VmRegistry

    def _where(self, line: int) -> str:
        return f"{self.name}:{line}"

    def _shadow_page(self, name: str, vm: int, values: tuple[Any, ...]) -> None:
        """Count a shadow page the kernel made, found or zapped (the footer's ``observed``)."""
        _gfn, level, direct, created = values
        what = (
            "sp_zapped"
            if name == "kvm_mmu_prepare_zap_page"
            else ("sp_new" if created else "sp_existing")
        )
        self._observe(f"{what}_l{level}", vm)
        if not direct:
            self._observe("sp_indirect", vm)

    def _observe(self, key: str, vm: int) -> None:
        counts = self.report.observed.setdefault("_by_vm", {}).setdefault(vm, Counter())
        counts[key] += 1

    def _unmap(self, rows: Rows, t: int, line: int, start: int, end: int) -> None:
        hits = self.registry.unmap_hits(start, end)
        if len({h[0].name for h in hits}) != 1:
            reason = "outside every configured memslot" if not hits else "in several VMs' memslots"
            self.report.skipped[f"kvm_unmap_hva_range {reason} (kept as observed)"] += 1
            self.report.observed["unplaced_unmaps"] = (
                self.report.observed.get("unplaced_unmaps", 0) + 1
            )
            return
        cfg = hits[0][0]
        task = Task(cfg.name, cfg.threads[0] if cfg.threads else 0, cfg.tgid)
        vm = self.registry.vm_of(task, t, self._where(line))
        for _, s, lo, hi in hits:
            rows.add(
                1,
                t_ns=t,
                line=line,
                event=EVENT_CODE["unmap"],
                vm=vm,
                gpa=s.slot.gpa_start + (lo - s.hva_start),  # type: ignore[operator]
                len=hi - lo,
            )

    def _pass_row(self, rows: Rows, p: Pass) -> None:
        guesses = self.report.observed.setdefault("guesses", Counter())
        if p.guessed_source:
            guesses["pass source taken as direct"] += 1
        if p.guessed_priority:
            guesses["pass priority taken as 12"] += 1
        rows.add(
            1,
            t_ns=p.t_ns,
            line=p.line,
            event=EVENT_CODE["reclaim"],
            source=SOURCE_CODE[p.source],
            priority=p.priority,
            nid=p.nid,
        )
