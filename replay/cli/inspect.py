"""``replay inspect``: what a trace holds."""

from __future__ import annotations

from typing import TYPE_CHECKING

from replay.cli.console import emit_json, make_console, progress, user_errors
from replay.cli.options import JsonFlag, TraceArgument

if TYPE_CHECKING:
    from replay.trace.summary import TraceSummary


@user_errors
def inspect(
    trace: TraceArgument,
    json_: JsonFlag = False,
) -> None:
    """Show a trace's schema version, VMs, time span and events; validates every row."""
    from replay.trace.summary import summarize_trace

    with progress(f"inspect {trace.name}", 1) as update:
        summary = summarize_trace(str(trace), update)
    if json_:
        emit_json({"command": "inspect", **summary.to_json()})
    else:
        _print(summary)


def _print(s: TraceSummary) -> None:
    from rich.table import Table

    meta = s.trace.meta
    console = make_console()
    span = (
        f"{s.t_first_ns / 1e9:.6f} s .. {s.t_last_ns / 1e9:.6f} s "
        f"({(s.t_last_ns - s.t_first_ns) / 1e9:.3f} s)"
        if s.t_first_ns is not None and s.t_last_ns is not None
        else "empty"
    )
    console.print(
        f"[bold]{s.trace.path}[/bold]  trace schema v{meta.schema_version}, "
        f"{_size(s.trace.size_bytes)}, {s.trace.num_rows:,} rows in "
        f"{s.trace.num_row_groups} row groups"
    )
    console.print(f"coverage   {meta.coverage}")
    console.print(f"time span  {span}")
    prov = ", ".join(f"{k}={v}" for k, v in meta.provenance.items() if v is not None)
    console.print(f"provenance {prov}")
    kinds = ", ".join(f"{k} {n:,}" for k, n in s.events_by_kind.items())
    console.print(f"events     {kinds}")
    sources = ", ".join(f"{k} {n:,}" for k, n in s.reclaim_by_source.items() if n)
    if sources:
        console.print(f"reclaim    {sources}")
    console.print(f"mmio       {s.mmio_accesses:,} accesses outside every memslot")

    table = Table(title="VMs (vm_list order, head first)", title_justify="left")
    for col in (
        "id",
        "name",
        "vCPUs",
        "MMU mode",
        "root",
        "memslots",
        "accesses",
        "unmaps",
        "zap_all",
    ):
        table.add_column(
            col,
            justify="right" if col in ("id", "vCPUs", "accesses", "unmaps", "zap_all") else "left",
        )
    shown = meta.vms if len(meta.vms) <= 40 else meta.vms[:40]
    for vm in shown:
        slots = "\n".join(
            f"{m.gpa_start:#x}+{_size(m.size)} {m.backing}{' dirty_log' if m.dirty_log else ''}"
            for m in vm.memslots
        )
        counts = s.events_by_vm[vm.id]
        table.add_row(
            str(vm.id),
            vm.name,
            str(vm.vcpus),
            vm.mmu_mode,
            str(vm.root_level),
            slots,
            f"{counts['access']:,}",
            f"{counts['unmap']:,}",
            f"{counts['zap_all']:,}",
        )
    console.print(table)
    if len(meta.vms) > len(shown):
        console.print(f"... and {len(meta.vms) - len(shown)} more VMs (--json lists them all)")


def _size(n: int) -> str:
    for unit, shift in (("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return (
                f"{n / (1 << shift):g} {unit}"
                if n % (1 << shift) == 0
                else f"{n / (1 << shift):.1f} {unit}"
            )
    return f"{n} B"
