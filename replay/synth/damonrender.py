"""Render what a modern host records of a synthetic trace: a DAMON record, and the faults of `none`.

``replay synth SCENARIO --as damon`` emulates DAMON on the trace's accesses
(:mod:`replay.synth.damon`) and writes the record as ``damon:damon_aggregated`` lines in one of
the three text layouts (the real captures' line prefixes: task ``kdamond.0``, one burst per
aggregation, target by target, in address order, 1 µs apart) or as a ``damo record`` file
(``json`` or zlib ``json_compressed``, damo v3.3's keys, numbers as damo writes them). Beside it:
``OUT.vms.toml`` (the VMs for ``replay convert --vm-config``, with every memslot's ``hva_start``
and each VM's ``damon_target``) and ``OUT.qemu-<vm id>.log`` (QEMU's ``kvm_set_user_memory``
trace lines of each VMM, the other way to give the memslots' host addresses).

``replay synth SCENARIO --as LAYOUT --faults-under none`` writes only the faults a ``none``
replay of the trace has (what a 6.13+ host without the zapping shrinker logs) with the host's
pressure events, and the same ``OUT.vms.toml``.
"""

from __future__ import annotations

import json
import zlib
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.convert.render import Task, _line, header, vm_config_text
from replay.synth.damon import Monitor, MonitorSettings, access_keys, hva_start

if TYPE_CHECKING:
    from pathlib import Path

    from replay.synth.damon import Aggregation
    from replay.trace.reader import TraceFile
    from replay.trace.schema import TraceMeta

DAMON_FORMATS = ("ftrace", "perf", "trace-cmd", "json", "json_compressed")
KDAMOND = Task("kdamond.0", 107, 107)
"""The monitor's kernel thread, as in the captures (``kdamond.0``, one CPU)."""


def accesses_of(trace: TraceFile) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(t_ns, vm, gpa) of every access row of a trace."""
    from replay.trace.reader import iter_batches
    from replay.trace.schema import EVENT_CODE

    ts, vms, gpas = [], [], []
    for batch in iter_batches(trace):
        rows = np.flatnonzero(batch.event == EVENT_CODE["access"])
        ts.append(batch.t_ns[rows])
        vms.append(batch.vm[rows])
        gpas.append(batch.gpa[rows])
    if not ts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.astype(np.uint16), empty.astype(np.uint64)
    return np.concatenate(ts), np.concatenate(vms), np.concatenate(gpas)


def emulate(trace: TraceFile, settings: MonitorSettings) -> list[Aggregation]:
    """DAMON's aggregations of a trace's accesses (from its first event to its last)."""
    t, vm, gpa = accesses_of(trace)
    if not len(t):
        return []
    t0, t_end = int(t[0]), int(t[-1])
    keys = access_keys(trace.meta, t, vm, gpa, t0, settings.sample_us * 1000)
    return list(Monitor(trace.meta, settings).run(keys, t0, t_end))


def damon_lines(aggs: list[Aggregation], layout: str) -> list[str]:
    """``damon_aggregated`` lines: per aggregation, a burst target by target."""
    lines: list[str] = []
    for agg in aggs:
        counts = np.bincount(agg.target)
        for i, (ti, a, b, nr, age) in enumerate(
            zip(
                agg.target.tolist(),
                agg.start.tolist(),
                agg.end.tolist(),
                agg.nr_accesses.tolist(),
                agg.age.tolist(),
                strict=True,
            )
        ):
            payload = f"target_id={ti} nr_regions={counts[ti]} {a}-{b}: {nr} {age}"
            t = agg.t_end_ns + 1000 * i
            lines.append(_line(KDAMOND, 1, t, "damon_aggregated", "damon", payload, layout))
    return lines


def _commas(n: int) -> str:
    return f"{n:,}"


def damo_record(aggs: list[Aggregation], meta: TraceMeta, settings: MonitorSettings) -> str:
    """The aggregations as damo v3.3's JSON record: a list of records, one per target."""
    records: list[dict[str, Any]] = []
    for ti in range(len(meta.vms)):
        snapshots = []
        for agg in aggs:
            mine = agg.target == ti
            regions = [
                {
                    "start": _commas(a),
                    "end": _commas(b),
                    "nr_accesses": {"samples": nr, "percent": None},
                    "age": {"usec": None, "aggr_intervals": str(age)},
                    "probe_hits": [],
                    "sz_filter_passed": "0 B",
                }
                for a, b, nr, age in zip(
                    agg.start[mine].tolist(),
                    agg.end[mine].tolist(),
                    agg.nr_accesses[mine].tolist(),
                    agg.age[mine].tolist(),
                    strict=True,
                )
            ]
            total = int((agg.end[mine] - agg.start[mine]).sum())
            snapshots.append(
                {
                    "start_time": str(agg.t_end_ns - settings.aggr_us * 1000),
                    "end_time": str(agg.t_end_ns),
                    "regions": regions,
                    "total_bytes": str(total),
                    "damos_stats": None,
                    "sample_interval_us": None,
                }
            )
        records.append(
            {
                "kdamond_idx": None,
                "context_idx": None,
                "intervals": {
                    "sample_us": str(settings.sample_us),
                    "aggr_us": str(settings.aggr_us),
                    "ops_update_us": "1000000",
                    "intervals_goal": {
                        "access_bp": "0.000000",
                        "aggrs": "0",
                        "min_sample_us": "0",
                        "max_sample_us": "0",
                    },
                },
                "scheme_idx": None,
                "target_id": ti,
                "scheme_filters": [],
                "snapshots": snapshots,
                "data_source": "unknown",
            }
        )
    return json.dumps(records, indent=4)


def qemu_lines(meta: TraceMeta, vm_index: int) -> list[str]:
    """QEMU's ``kvm_set_user_memory`` lines (log backend, QEMU >= 9.1) of one VMM."""
    vm = meta.vms[vm_index]
    return [
        f"kvm_set_user_memory AddrSpace#0 Slot#{i} flags=0x0 gpa=0x{s.gpa_start:x} "
        f"size=0x{s.size:x} ua=0x{hva_start(vm_index, s.gpa_start):x} guest_memfd=-1 "
        "guest_memfd_offset=0x0 ret=0"
        for i, s in enumerate(vm.memslots)
    ]


def damon_vm_config(meta: TraceMeta) -> str:
    """The ``--vm-config`` text of the rendered VMs, with memslot host addresses and targets."""
    lines = vm_config_text(meta).splitlines()
    out: list[str] = []
    vm_index = -1
    for line in lines:
        if line == "[[vm]]":
            vm_index += 1
        if line.startswith("root_level = "):
            out += [line, f"damon_target = {vm_index}"]
            continue
        out.append(line)
        if line.startswith("gpa_start = "):
            gpa = int(line.removeprefix("gpa_start = "), 16)
            out.append(f"hva_start = {hva_start(vm_index, gpa):#x}")
    return "\n".join(out) + "\n"


def write_damon(
    trace: TraceFile, out: Path, fmt: str, settings: MonitorSettings, *, force: bool
) -> dict[str, Any]:
    """Emulate DAMON on ``trace`` and write the record as ``fmt``, with the memslot tables."""
    from replay.atomic import atomic_output

    aggs = emulate(trace, settings)
    meta = trace.meta
    if fmt in ("json", "json_compressed"):
        text = damo_record(aggs, meta, settings)
        data = text.encode() if fmt == "json" else zlib.compress(text.encode())
        with atomic_output(out, "damo record", force=force) as tmp:
            tmp.write_bytes(data)
        lines = 0
    else:
        body = [*header(fmt, meta), *damon_lines(aggs, fmt)]
        with atomic_output(out, "log", force=force) as tmp:
            tmp.write_text("\n".join(body) + "\n", encoding="utf-8")
        lines = len(body)
    tables = []
    for i, vm in enumerate(meta.vms):
        qemu = out.with_name(f"{out.name}.qemu-{vm.id}.log")
        with atomic_output(qemu, "QEMU trace", force=force) as tmp:
            tmp.write_text("\n".join(qemu_lines(meta, i)) + "\n", encoding="utf-8")
        tables.append(str(qemu))
    config = out.with_name(out.name + ".vms.toml")
    with atomic_output(config, "vm config", force=force) as tmp:
        tmp.write_text(damon_vm_config(meta), encoding="utf-8")
    return {
        "format": fmt,
        "aggregations": len(aggs),
        "regions": int(sum(len(a.start) for a in aggs)),
        "lines": lines,
        "vm_config": str(config),
        "qemu_logs": tables,
        "intervals": {"sample_us": settings.sample_us, "aggr_us": settings.aggr_us},
    }


def none_fault_rows(trace: TraceFile) -> np.ndarray:
    """The trace rows that fault under policy ``none`` (default model): what 6.13+ logs."""
    from replay.mmu.config import CostModel, MmuConfig
    from replay.mmu.engine import VectorEngine
    from replay.trace.reader import iter_batches

    engine = VectorEngine(trace.meta, "none", MmuConfig(), CostModel())
    for batch in iter_batches(trace):
        engine.feed(batch)
    rows: np.ndarray = np.asarray(engine.finish().faults["row"], dtype=np.int64)
    return rows


def write_none_faults(trace: TraceFile, layout: str, out: Path, *, force: bool) -> dict[str, Any]:
    """Render only the faults of a ``none`` replay, with every host event, as ``layout`` text."""
    import os

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from replay.atomic import atomic_output
    from replay.convert.render import render_trace
    from replay.trace.reader import open_trace
    from replay.trace.schema import TraceMeta
    from replay.trace.writer import write_trace

    faults = none_fault_rows(trace)
    meta = trace.meta
    logged = TraceMeta(meta.vms, "faults-only", {**meta.provenance, "faults_under": "none"})
    tmp = out.with_name(f".{out.name}.none.{os.getpid()}.partial")
    try:
        with write_trace(tmp, logged) as sink:
            # A batch at a time: the host events and the accesses that faulted under none.
            start = 0
            for rb in pq.ParquetFile(trace.path).iter_batches(batch_size=1 << 20):
                event = pc.cast(rb.column("event"), pa.string())
                keep = ~pc.equal(event, "access").to_numpy(zero_copy_only=False)
                lo, hi = np.searchsorted(faults, [start, start + rb.num_rows])
                keep[faults[lo:hi] - start] = True
                start += rb.num_rows
                sink.write(pa.Table.from_batches([rb.filter(pa.array(keep))]))
        index = {v.id: i for i, v in enumerate(meta.vms)}
        report = render_trace(
            open_trace(tmp),
            layout,
            out,
            force=force,
            hva=lambda vm, gpa: hva_start(index[vm], 0) + gpa,
        )
    finally:
        tmp.unlink(missing_ok=True)
    config = out.with_name(out.name + ".vms.toml")
    with atomic_output(config, "vm config", force=True) as tmp_config:
        tmp_config.write_text(damon_vm_config(meta), encoding="utf-8")
    return {
        "layout": layout,
        "lines": report.lines,
        "rows": report.rows,
        "left_out": report.left_out,
        "faults": len(faults),
        "vm_config": str(config),
    }
