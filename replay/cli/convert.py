"""``replay convert``: kernel trace text (ftrace, perf script, trace-cmd report) to a trace."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from replay.cli.console import emit_json, fail, note, sweep, user_errors
from replay.cli.options import AccessSource, FaultCodes, ForceFlag, JsonFlag, LogLayout, MmuMode


@user_errors
def convert(  # typer declares a command's options as its parameters: more than 8 here
    logs: Annotated[
        list[str],
        typer.Argument(
            help="Log files (plain, .gz or .zst; - for standard input), one host, any layout."
        ),
    ],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Trace file to write.", readable=False)
    ],
    format_: Annotated[
        LogLayout | None,
        typer.Option("--format", help="Force the layout (default: recognised from the lines)."),
    ] = None,
    fault_codes: Annotated[
        FaultCodes,
        typer.Option(
            help="How kvm_page_fault error codes are written: vmx (EPT exit qualification), "
            "svm (NPF / #PF error code) or auto."
        ),
    ] = FaultCodes.AUTO,
    vm_config: Annotated[
        Path | None,
        typer.Option(
            help="TOML file naming each VM's threads, memslots and MMU mode.", readable=False
        ),
    ] = None,
    mmu: Annotated[
        MmuMode | None, typer.Option(help="MMU mode of VMs the config does not set.")
    ] = None,
    access_source: Annotated[
        AccessSource,
        typer.Option(
            help="Event that marks a guest fault: kvm_page_fault, kvm_mmu_spte_requested, or "
            "auto (the first if the logs have it)."
        ),
    ] = AccessSource.AUTO,
    damon_intervals: Annotated[
        str | None,
        typer.Option(
            help="DAMON's sampling and aggregation intervals, SAMPLE_US,AGGR_US, for DAMON "
            "trace text (it does not hold them; damo records do)."
        ),
    ] = None,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first line that cannot be read.")
    ] = False,
    force: ForceFlag = False,
    json_: JsonFlag = False,
) -> None:
    """Convert kernel trace text into a trace that replay run accepts."""
    from replay.convert import ConvertOptions, convert_logs
    from replay.convert.options import parse_intervals

    if output.exists() and not force:
        fail(f"output {output} exists; pass --force to overwrite it or choose another -o")
    options = ConvertOptions(
        layout=None if format_ is None else format_.value,
        fault_codes=fault_codes.value,
        vm_config=vm_config,
        mmu=None if mmu is None else mmu.value,
        strict=strict,
        access_source=access_source.value,
        force=force,
        damon_intervals=None if damon_intervals is None else parse_intervals(damon_intervals),
    )
    sweep(output.parent)
    report = convert_logs(logs, output, options)
    doc = report.to_json()
    if json_:
        emit_json({"command": "convert", "output": str(output), **doc})
        return
    _print_summary(output, doc)


def _print_summary(output: Path, doc: dict[str, Any]) -> None:
    rows = doc["rows"]
    files = doc["files"]
    layouts = ", ".join(f"{f['path']} ({f['layout']}, {f['lines']:,} lines)" for f in files)
    note(f"read {layouts}")
    used = ", ".join(f"{k} {v:,}" for k, v in sorted(doc["events"].items()))
    note(f"events used: {used or 'none'}")
    for title, key in (
        ("unknown events", "unknown_events"),
        ("events not needed", "unused_events"),
    ):
        if doc[key]:
            note(f"{title}: " + ", ".join(f"{k} {v:,}" for k, v in sorted(doc[key].items())))
    if doc["skipped"]:
        note("skipped: " + ", ".join(f"{k} {v:,}" for k, v in sorted(doc["skipped"].items())))
    for line in doc["examples"]:
        note(f"  {line}")
    for line in doc["warnings"]:
        note(f"warning: {line}")
    damon = doc.get("damon")
    if damon:
        intervals = "; ".join(
            f"{k}: {v['sample_us']:,}/{v['aggr_us']:,} µs from the {v['source']}"
            for k, v in damon["intervals"].items()
        )
        note(
            f"DAMON: {damon['regions']:,} regions, {damon['bytes_placed']:,} bytes placed in "
            f"guests, {damon['bytes_outside_memslots']:,} outside every memslot; intervals "
            f"(sample/aggregation) {intervals}"
        )
    vms = ", ".join(f"{v['name']} ({v['vcpus']} vCPUs, {v['mmu_mode']})" for v in doc["vms"])
    note(
        f"wrote {output}: {rows.get('access', 0):,} faults, {rows.get('reclaim', 0):,} reclaim "
        f"passes, {rows.get('zap_all', 0):,} zap_all, {rows.get('unmap', 0):,} unmaps; "
        + (f"{rows['region']:,} DAMON region rows; " if rows.get("region") else "")
        + f"VMs: {vms}; coverage "
        f"{doc.get('coverage', 'faults-only')}"
    )
