"""The converted rows into a schema-v1 trace, and its footer: VMs, provenance, observations.

Rows arrive in time order with provisional VM indices (in order of first sight in the logs);
the trace numbers VMs in order of first appearance in time, so every chunk is remapped as it is
written. The footer is known only at the end: the VM table, what was inferred and warned about,
and what the kernel's own events said (``observed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from replay.convert.report import nothing_usable, seen, wrap_hint
from replay.convert.source import LogFormatError
from replay.trace.schema import EVENT_CODE, TraceMeta

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from replay.convert.options import ConvertOptions
    from replay.convert.report import ConvertReport
    from replay.convert.vms import VmRegistry
    from replay.trace.writer import TraceSink


def write_converted(
    output: Path,
    chunks: Iterator[dict[str, np.ndarray]],
    registry: VmRegistry,
    report: ConvertReport,
    options: ConvertOptions,
) -> None:
    """Write the rows of ``chunks`` and the footer to ``output`` (atomically).

    Logs with nothing a replay can use raise :class:`.source.LogFormatError`, and no trace is
    left behind. ``report`` counts the rows and gets the VM table and the warnings.
    """
    from replay.trace.writer import write_trace

    with write_trace(output) as sink:  # the footer is known at the end: set before closing
        rows_written = _write_rows(sink, chunks, registry, report)
        _check_usable(report, registry, rows_written)
        sink.meta = _footer(report, registry, options)


def _write_rows(
    sink: TraceSink,
    chunks: Iterator[dict[str, np.ndarray]],
    registry: VmRegistry,
    report: ConvertReport,
) -> int:
    """Write every chunk's rows as trace rows; count them by kind. Returns the rows written."""
    from replay.trace.writer import build_table

    rows_written = 0
    remap: np.ndarray | None = None
    for cols in chunks:
        n = len(cols["t_ns"])
        if not n:
            continue
        if remap is None or len(remap) < len(registry.vms):
            # Provisional VM indices to ids in order of first appearance; stable once made,
            # because a VM first seen later has a later first time.
            remap = np.argsort(np.array(registry.final_order(), dtype=np.int64))
        values, valid = trace_columns(cols, remap)
        sink.write(build_table(n, values, valid))
        rows_written += n
        for kind, code in EVENT_CODE.items():
            report.rows[kind] += int((cols["event"] == code).sum())
    return rows_written


def _check_usable(report: ConvertReport, registry: VmRegistry, rows_written: int) -> None:
    """Refuse a trace a replay cannot run: no row, no guest fault, or no VM."""
    if rows_written == 0:
        raise LogFormatError(nothing_usable(report))
    if not report.rows["access"] and registry.vms:
        raise LogFormatError(
            f"no guest fault in {report.lines:,} lines ({seen(report)}){wrap_hint(report)}; "
            "replay run needs "
            "kvm:kvm_page_fault or kvmmmu:kvm_mmu_spte_requested lines"
        )
    if not registry.vms:
        raise LogFormatError(
            f"{report.rows['reclaim']:,} reclaim passes but no KVM event in "
            f"{report.lines:,} lines, so no VM to replay; convert this log together with "
            "the same host's kvm log (replay convert vmscan.txt kvm.txt -o trace.parquet)"
        )


def _footer(report: ConvertReport, registry: VmRegistry, options: ConvertOptions) -> TraceMeta:
    """The trace's footer; the report gets the VM table and the warnings too."""
    from importlib.metadata import PackageNotFoundError, version

    specs, notes = registry.specs(options.mmu)
    report.vms = [vm.to_json() for vm in specs]
    report.warnings += notes + _warnings(report, registry)
    try:
        tool = version("kvm-mmu-replay")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        tool = "unknown"
    return TraceMeta(
        vms=tuple(specs),
        coverage="faults-only",
        provenance={
            "generator": "replay convert",
            "generator_version": tool,
            "files": [
                {"path": f.path, "sha256": f.sha256, "layout": f.layout, "lines": f.lines}
                for f in report.files
            ],
            "access_source": report.access_source,
            "vm_identity": sorted(registry.identity),
            "inferred": notes,
            "options": {
                "format": options.layout,
                "fault_codes": options.fault_codes,
                "vm_config": None if options.vm_config is None else str(options.vm_config),
                "mmu": options.mmu,
            },
        },
        observed=_observed(report, registry),
    )


def trace_columns(
    cols: dict[str, np.ndarray], remap: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | bool]]:
    """A converter's int64 columns as the trace's typed columns, and where each is valid."""
    event = cols["event"]
    has_vm = cols["vm"] >= 0
    vm = remap[np.maximum(cols["vm"], 0)] if len(remap) else np.zeros(len(event), np.int64)
    vm = np.where(has_vm, vm, 0)
    values = {
        "t_ns": cols["t_ns"],
        "event": event,
        "vm": vm.astype(np.uint16),
        "vcpu": np.maximum(cols["vcpu"], 0).astype(np.uint16),
        "gpa": cols["gpa"].astype(np.uint64),
        "len": np.maximum(cols["len"], 0).astype(np.uint64),
        "op": np.maximum(cols["op"], 0),
        "source": np.maximum(cols["source"], 0),
        "priority": np.maximum(cols["priority"], 0).astype(np.int8),
        "nid": np.maximum(cols["nid"], 0).astype(np.int16),
    }
    access = event == EVENT_CODE["access"]
    unmap = event == EVENT_CODE["unmap"]
    reclaim = event == EVENT_CODE["reclaim"]
    valid: dict[str, np.ndarray | bool] = {
        "t_ns": True,
        "event": True,
        "vm": has_vm,
        "vcpu": access,
        "gpa": access | unmap,
        "len": unmap,
        "op": access,
        "source": reclaim,
        "priority": reclaim,
        "nid": reclaim,
        "nr_to_scan": False,
    }
    return values, valid


def _warnings(report: ConvertReport, registry: VmRegistry) -> list[str]:
    """What the user should know about the trace: guesses, losses, mixed clocks."""
    out = []
    if "single" in registry.identity and report.rows["access"]:
        out.append(
            "the log does not tell VMs apart (no tgid column): all guest events are one VM; "
            "record with ftrace's record-tgid option or perf script -F +pid, or give --vm-config"
        )
    if registry.unconfigured:
        out.append(
            "events from tasks --vm-config does not name: "
            + ", ".join(sorted(registry.unconfigured)[:5])
        )
    by_vm = report.observed.get("_by_vm", {})
    if any(c.get("sp_indirect") for c in by_vm.values()):
        out.append(
            "kvm_mmu_get_page roles without 'direct': the host used shadow paging (no EPT/NPT), "
            "which v1 replays only as an approximation (faulting addresses taken as guest "
            "physical, MMU modes tdp_mmu/shadow_direct)"
        )
    layouts = {f.layout for f in report.files}
    if len(report.files) > 1 and len(layouts) > 1:
        out.append(
            f"logs of different layouts merged ({', '.join(sorted(layouts))}): their clocks may "
            "differ (perf's runs at an offset from the tracefs clock); events were merged by "
            "their time stamps as printed"
        )
    if report.lost_events:
        out.append(f"the kernel lost {report.lost_events:,} events (ring buffer overruns)")
    guesses = report.observed.get("guesses", {})
    for what, n in guesses.items():
        out.append(f"{n:,} reclaim passes: {what}")
    skipped_spte = sum(
        v for k, v in report.skipped.items() if k.startswith("kvm_mmu_spte_requested")
    )
    if skipped_spte:
        out.append(
            f"{skipped_spte:,} kvm_mmu_spte_requested lines not used: kvm_page_fault is the "
            "access source (one per fault; using both would count faults twice)"
        )
    return out


def _observed(report: ConvertReport, registry: VmRegistry) -> dict[str, Any]:
    """The footer's ``observed`` block: what the kernel's own events said."""
    order = registry.final_order()
    new_id = {prov: i for i, prov in enumerate(order)}
    per_vm = {}
    for prov, counts in sorted(report.observed.get("_by_vm", {}).items()):
        per_vm[str(new_id[prov])] = dict(sorted(counts.items()))
    scans = report.observed.get("kvm_shrinker_scans", [])
    return {
        "per_vm": per_vm,
        "kvm_shrinker_scans": {
            "calls": len(scans),
            "total_scan": sum(s["total_scan"] for s in scans),
            "freed": sum(s["freed"] or 0 for s in scans),
        },
        "unplaced_unmaps": report.observed.get("unplaced_unmaps", 0),
        "lost_events": report.lost_events,
        "guesses": dict(report.observed.get("guesses", {})),
    }
