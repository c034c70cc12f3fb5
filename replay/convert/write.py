"""The converted rows into a schema-v2 trace, and its footer: VMs, provenance, observations.

Rows arrive in time order with provisional VM indices (in order of first sight in the logs);
the trace numbers VMs in order of first appearance in time, so every chunk is remapped as it is
written. The footer is known only at the end: the VM table, what was inferred and warned about,
and what the kernel's own events said (``observed``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from replay._version import __version__
from replay.convert.report import first_example, nothing_usable, seen, wrap_hint
from replay.convert.source import LogFormatError
from replay.convert.timeorder import REORDERED, TIME_REASONS
from replay.trace.schema import EVENT_CODE, TraceMeta

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from replay.convert.damon import DamonPlacer
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
    damon: DamonPlacer | None = None,
) -> None:
    """Write the rows of ``chunks`` and the footer to ``output`` (atomically).

    Logs with nothing a replay can use raise :class:`.source.LogFormatError`, and no trace is
    left behind. ``report`` counts the rows and gets the VM table and the warnings.
    """
    from replay.trace.writer import write_trace

    with write_trace(
        output, force=options.force
    ) as sink:  # the footer is known at the end: set before closing
        rows_written = _write_rows(sink, chunks, registry, report)
        if damon is not None and damon.targets:
            report.damon = damon.summary()
            check_placed(report.damon)
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
            remap = registry.remap()
        values, valid = trace_columns(cols, remap)
        sink.write(build_table(n, values, valid))
        rows_written += n
        counts = np.bincount(cols["event"], minlength=len(EVENT_CODE))
        for kind, code in EVENT_CODE.items():
            report.rows[kind] += int(counts[code])
    return rows_written


def check_placed(summary: dict[str, Any]) -> None:
    """Refuse DAMON regions none of which fell in a guest: a ``paddr`` record, or a wrong map.

    DAMON's ``paddr`` operations (the host's own monitor) report host physical addresses; no
    memslot table maps those to guests (that would take a host-physical to guest map, which
    this version does not build), so nothing of such a record can be placed.
    """
    if summary["regions"] and not summary["bytes_placed"]:
        raise LogFormatError(
            f"none of the {summary['regions']:,} DAMON regions ({summary['bytes']:,} bytes) falls "
            "in a memslot's host addresses: a paddr record (host physical addresses, as a "
            "host's own kdamond) cannot be placed in guests without a host-physical to guest "
            "map; record the VMM process with vaddr operations (damo record --ops vaddr "
            "<VMM pid>), or check hva_start"
        )


def _check_usable(report: ConvertReport, registry: VmRegistry, rows_written: int) -> None:
    """Refuse a trace a replay cannot run: no row, no guest fault, or no VM."""
    if rows_written == 0:
        raise LogFormatError(nothing_usable(report))
    if not report.rows["access"] and not report.rows["region"] and registry.vms:
        raise LogFormatError(
            f"no guest fault in {report.lines:,} lines ({seen(report)}){wrap_hint(report)}"
            f"{first_example(report)}; "
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
    specs, notes = registry.specs(options.mmu)
    report.vms = [vm.to_json() for vm in specs]
    warned = notes + _warnings(report, registry) + damon_warnings(report.damon)
    report.coverage = coverage_of(report)
    report.warnings += [text for _, text in warned]
    provenance = {
        "generator": "replay convert",
        "generator_version": __version__,
        "files": [
            {"path": f.path, "sha256": f.sha256, "layout": f.layout, "lines": f.lines}
            for f in report.files
        ],
        "access_source": report.access_source,
        "vm_identity": sorted(registry.identity),
        "inferred": [text for _, text in notes],
        # Every warning, by kind, so that a replay can name the likely reasons for logged
        # faults its model does not explain (replay/run/fidelity.py; schemas/README.md).
        "warnings": [{"kind": kind, "text": text} for kind, text in warned],
        "options": {
            "format": options.layout,
            "fault_codes": options.fault_codes,
            "vm_config": None if options.vm_config is None else str(options.vm_config),
            "mmu": options.mmu,
            "damon_intervals": options.damon_intervals,
        },
    }
    if report.damon:
        provenance["damon"] = report.damon
    return TraceMeta(
        vms=tuple(specs),
        coverage=report.coverage,
        provenance=provenance,
        observed=_observed(report, registry),
    )


def coverage_of(report: ConvertReport) -> str:
    """What a converted trace holds: logged faults, DAMON's sampled regions, or both."""
    if not report.rows["region"]:
        return "faults-only"
    return "faults+sampled" if report.rows["access"] else "sampled"


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
    region = event == EVENT_CODE["region"]
    has_regions = "nr_accesses" in cols and bool(region.any())
    if has_regions:
        values.update(
            nr_accesses=np.maximum(cols["nr_accesses"], 0).astype(np.uint32),
            window_ns=np.maximum(cols["window_ns"], 0).astype(np.uint64),
            sample_ns=np.maximum(cols["sample_ns"], 0).astype(np.uint64),
            age=np.maximum(cols["age"], 0).astype(np.uint32),
        )
    valid: dict[str, np.ndarray | bool] = {
        "t_ns": True,
        "event": True,
        "vm": has_vm,
        "vcpu": access,
        "gpa": access | unmap | region,
        "len": unmap | region,
        "op": access,
        "source": reclaim,
        "priority": reclaim,
        "nid": reclaim,
        "nr_to_scan": False,
    }
    if has_regions:
        # Only chunks with region rows carry these columns: the others write them as nulls.
        valid.update(
            nr_accesses=region,
            window_ns=region,
            sample_ns=region,
            age=region & (cols["age"] >= 0),
        )
    return values, valid


def _warnings(report: ConvertReport, registry: VmRegistry) -> list[tuple[str, str]]:
    """What the user should know about the trace: guesses, losses, mixed clocks.

    Each warning is (kind, text); the kinds are listed in ``schemas/README.md``.
    """
    out: list[tuple[str, str]] = []
    if "single" in registry.identity and report.rows["access"]:
        out.append(
            (
                "single_vm",
                "the log does not tell VMs apart (no tgid column): all guest events are one VM; "
                "record with ftrace's record-tgid option or perf script -F +pid, or give "
                "--vm-config",
            )
        )
    if registry.unconfigured:
        out.append(
            (
                "unconfigured_tasks",
                "events from tasks --vm-config does not name: "
                + ", ".join(sorted(registry.unconfigured)[:5]),
            )
        )
    by_vm = report.observed.get("_by_vm", {})
    if any(c.get("sp_indirect") for c in by_vm.values()):
        out.append(
            (
                "shadow_paging",
                "kvm_mmu_get_page roles without 'direct': the host used shadow paging (no "
                "EPT/NPT), which v1 replays only as an approximation (faulting addresses taken "
                "as guest physical, MMU modes tdp_mmu/shadow_direct)",
            )
        )
    layouts = {f.layout for f in report.files}
    if len(report.files) > 1 and len(layouts) > 1:
        out.append(
            (
                "layouts_merged",
                f"logs of different layouts merged ({', '.join(sorted(layouts))}): their clocks "
                "may differ (perf's runs at an offset from the tracefs clock); events were "
                "merged by their time stamps as printed",
            )
        )
    out += _time_warnings(report)
    if report.lost_events:
        out.append(
            ("lost_events", f"the kernel lost {report.lost_events:,} events (ring buffer overruns)")
        )
    guesses = report.observed.get("guesses", {})
    out += [("reclaim_guessed", f"{n:,} reclaim passes: {what}") for what, n in guesses.items()]
    skipped_spte = sum(
        v for k, v in report.skipped.items() if k.startswith("kvm_mmu_spte_requested")
    )
    if skipped_spte:
        out.append(
            (
                "spte_requested_unused",
                f"{skipped_spte:,} kvm_mmu_spte_requested lines not used: kvm_page_fault is the "
                "access source (one per fault; using both would count faults twice)",
            )
        )
    return out


def damon_warnings(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """What the user should know about DAMON's regions: guessed intervals, lost bytes."""
    if not summary:
        return []
    out = []
    given = [k for k, v in summary["intervals"].items() if v["source"] == "option"]
    if given:
        out.append(
            (
                "damon_intervals_given",
                "DAMON intervals not read from the record but taken from --damon-intervals "
                f"({', '.join(given)}): if they are not the monitor's, every sampled access "
                "rate is off by their ratio",
            )
        )
    for name, t in summary["targets"].items():
        if t.get("why_not_placed"):
            out.append(
                (
                    "damon_target_not_vm",
                    f"DAMON {name} is no VM ({t['why_not_placed']}): its "
                    f"{t.get('regions_skipped', 0):,} regions were counted and left out",
                )
            )
        elif t.get("bytes") and not t.get("bytes_placed"):
            out.append(
                (
                    "damon_target_unplaced",
                    f"DAMON {name}: none of its {t['bytes']:,} bytes "
                    f"falls in VM {t['vm']}'s memslots (a paddr monitor, host physical addresses, "
                    "or another process): counted as outside",
                )
            )
    if summary["bytes_outside_memslots"]:
        out.append(
            (
                "damon_outside_memslots",
                f"{summary['bytes_outside_memslots']:,} of {summary['bytes']:,} DAMON region "
                "bytes lie outside every memslot (the VMM's own memory): counted, not placed",
            )
        )
    if summary["aggregations_cut_short"]:
        out.append(
            (
                "damon_cut_short",
                f"{summary['aggregations_cut_short']:,} DAMON aggregations have fewer lines "
                "than their nr_regions (lost events?): their regions were kept",
            )
        )
    return out


def _time_warnings(report: ConvertReport) -> list[tuple[str, str]]:
    """What time stamps out of order did to the trace (rules in :mod:`.timeorder`)."""
    out = []
    if report.reordered:
        out.append(
            (
                "lines_reordered",
                f"{report.reordered:,} lines out of time order by under 1 s ({REORDERED}): "
                "re-sorted, their time stamps kept",
            )
        )
    dropped = {k: v for k, v in report.skipped.items() if k in TIME_REASONS}
    if dropped:
        what = ", ".join(f"{k} {v:,}" for k, v in dropped.items())
        out.append(
            (
                "time_stamps_dropped",
                f"lines left out for their time stamps ({what}); a log made of several "
                "captures is converted with each part as its own file (files are merged by "
                "time)",
            )
        )
    return out


def _observed(report: ConvertReport, registry: VmRegistry) -> dict[str, Any]:
    """The footer's ``observed`` block: what the kernel's own events said."""
    remap = registry.remap()
    new_id = {prov: int(remap[prov]) for prov in range(len(remap))}
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
