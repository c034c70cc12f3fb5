"""Turn a scenario into a trace, streamed window by window.

The duration is cut into equal time windows of about ``WINDOW_ROWS`` accesses. For each window,
every vCPU produces its accesses (a Python loop over vCPUs, never over events), the streams are
merged by time, the host events of the window are slotted in, and the rows go out as one row
group. Memory is bounded by the window, so 100 million events cost no more than one million.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from replay._version import __version__
from replay.errors import ScenarioError
from replay.synth.pressure import HostEvents, host_events
from replay.synth.scenario import MAX_ACCESSES
from replay.synth.workload import VcpuStream, vcpu_streams
from replay.trace.schema import EVENT_CODE, TraceMeta, VmSpec
from replay.trace.writer import build_table, write_trace

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import pyarrow as pa

    from replay.synth.scenario import Scenario

WINDOW_ROWS = 1_000_000
"""Accesses per window: a little under a row group (2**20 rows), so a window is one row group."""


@dataclass(frozen=True)
class SynthResult:
    """What a generation wrote."""

    path: Path
    meta: TraceMeta
    rows: int
    accesses: int
    host_events: int


def trace_meta(scenario: Scenario) -> TraceMeta:
    """The footer of the trace a scenario generates: VMs in scenario order, ids 0, 1, ..."""
    vms = tuple(
        VmSpec(i, v.name, v.vcpus, v.mmu_mode, v.root_level, v.memslots)
        for i, v in enumerate(scenario.vms)
    )
    provenance = {
        "generator": "replay synth",
        "generator_version": __version__,
        "scenario": scenario.name,
        "seed": scenario.seed,
        "duration_s": scenario.duration_s,
        "accesses": scenario.accesses,
    }
    return TraceMeta(vms=vms, coverage="all-accesses", provenance=provenance)


class _Plan:
    """The scenario bound to random streams: the vCPUs, their totals and the host events."""

    def __init__(self, scenario: Scenario) -> None:
        self.duration_ns = round(scenario.duration_s * 1e9)
        vm_ids = {v.name: i for i, v in enumerate(scenario.vms)}
        n_vcpus = sum(v.vcpus for v in scenario.vms)
        # One independent stream per vCPU plus one for the host: adding a VM at the end of a
        # scenario leaves the earlier vCPUs' streams as they were.
        seeds = np.random.SeedSequence(scenario.seed).spawn(n_vcpus + 1)
        rngs = [np.random.default_rng(s) for s in seeds]
        self.streams: list[VcpuStream] = []
        for i, vm in enumerate(scenario.vms):
            first = len(self.streams)
            self.streams.extend(
                vcpu_streams(i, vm, self.duration_ns, rngs[first : first + vm.vcpus])
            )
        if scenario.accesses is not None:
            self._meet_total(scenario.accesses)
        else:
            expected = sum(s.expected_total for s in self.streams)
            if expected > MAX_ACCESSES:
                raise ScenarioError(
                    f"scenario {scenario.path}: its rates over duration_s = "
                    f"{scenario.duration_s:g} s give {expected:.3g} accesses, more than 2**40 "
                    f"({MAX_ACCESSES:,}); lower the rates or the duration, or give accesses"
                )
        self.totals = [s.count_before(self.duration_ns) for s in self.streams]
        self.host = host_events(scenario, vm_ids, rngs[-1])

    def _meet_total(self, total: int) -> None:
        """Scale every vCPU's rates so that the totals add up to exactly ``total``."""
        expected = np.array([s.expected_total for s in self.streams])
        if total and expected.sum() <= 0:
            raise ScenarioError("every vCPU has rate 0; give some workload a positive rate")
        if not total:
            counts = np.zeros(len(expected), dtype=np.int64)
        else:
            # Largest-remainder apportionment of the total, proportional to the rates.
            share = expected / expected.sum() * total
            counts = np.floor(share).astype(np.int64)
            rest = total - int(counts.sum())
            counts[np.argsort(-(share - counts), kind="stable")[:rest]] += 1
        for stream, want, have in zip(self.streams, counts, expected, strict=True):
            stream.rescale(want / have if have > 0 else 0.0)


def generate(
    scenario: Scenario,
    out: Path,
    *,
    progress: Callable[[int, int], None] | None = None,
    force: bool = True,
) -> SynthResult:
    """Generate ``scenario`` into the trace file ``out`` (written atomically).

    The same scenario and seed give a byte-identical file.

    Parameters
    ----------
    scenario : Scenario
        What :func:`load_scenario` read.
    out : Path
        The trace file to write; an existing file is replaced (with ``force``).
    progress : callable, optional
        Called as ``progress(done_windows, total_windows)`` after each window.
    force : bool
        Replace an existing ``out``; without it, an ``out`` that exists when the trace is
        complete (it appeared meanwhile) is an error and is left as it is.

    Returns
    -------
    SynthResult
        The path, the footer written, and the numbers of rows, accesses and host events.

    Raises
    ------
    ScenarioError
        The scenario's workloads have no positive rate but ask for accesses.
    OutputPathError
        ``out`` cannot be written (its folder is missing or refuses new files, the disk is
        full, or ``out`` appeared meanwhile without ``force``).

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_scenario
    >>> result = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> result.rows, result.accesses, result.host_events, result.meta.coverage
    (20018, 20000, 18, 'all-accesses')
    """
    plan = _Plan(scenario)
    meta = trace_meta(scenario)
    total = sum(plan.totals)
    n_windows = max(1, math.ceil(total / WINDOW_ROWS))
    accesses = 0
    with write_trace(out, meta, force=force) as sink:
        for w, table in enumerate(_tables(plan, n_windows)):
            sink.write(table)
            accesses += table.num_rows
            if progress is not None:
                progress(w + 1, n_windows)
        rows = sink.rows
    host = len(plan.host)
    return SynthResult(out, meta, rows, rows - host, host)


def _tables(plan: _Plan, n_windows: int) -> Iterator[pa.Table]:
    edges = [plan.duration_ns * w // n_windows for w in range(n_windows + 1)]
    host_edges = np.searchsorted(plan.host.t_ns, edges, side="left")
    for w in range(n_windows):
        lo, hi = edges[w], edges[w + 1]
        if w == n_windows - 1:
            hi = plan.duration_ns  # the last window is closed by the duration itself
        table = _window(plan.streams, lo, hi, plan.host.slice(host_edges[w], host_edges[w + 1]))
        if table.num_rows:
            yield table


def _window(streams: list[VcpuStream], lo: int, hi: int, host: HostEvents) -> pa.Table:
    parts = [(s, *s.chunk(lo, hi)) for s in streams]
    parts = [p for p in parts if len(p[1])]
    if parts:
        t_ns = np.concatenate([p[1] for p in parts])
        gpa = np.concatenate([p[2] for p in parts])
        op = np.concatenate([p[3] for p in parts])
        vm = np.concatenate([np.full(len(p[1]), p[0].vm_id, dtype=np.uint16) for p in parts])
        vcpu = np.concatenate([np.full(len(p[1]), p[0].vcpu, dtype=np.uint16) for p in parts])
        # Each vCPU's times are already sorted: the stable sort merges the runs, and ties keep
        # vCPU order (VM table order, then vCPU id), so the file is the same on every run.
        by_time = np.argsort(t_ns, kind="stable")
        t_ns, gpa, op, vm, vcpu = (a[by_time] for a in (t_ns, gpa, op, vm, vcpu))
    else:
        t_ns = np.empty(0, dtype=np.int64)
        gpa = np.empty(0, dtype=np.uint64)
        op = np.empty(0, dtype=np.int8)
        vm = vcpu = np.empty(0, dtype=np.uint16)
    n_access = len(t_ns)
    values = {
        "t_ns": t_ns,
        "event": np.full(n_access, EVENT_CODE["access"], dtype=np.int8),
        "vm": vm,
        "vcpu": vcpu,
        "gpa": gpa,
        "op": op,
    }
    if not len(host):
        return build_table(n_access, values, {"vm": True, "vcpu": True, "gpa": True, "op": True})
    return _merge_host(values, host)


def _merge_host(access: dict[str, np.ndarray], host: HostEvents) -> pa.Table:
    """Slot the host events in among the accesses.

    A host event tied with accesses goes after them (rule 17: ties keep file order, and the
    accesses were generated first).
    """
    n_access, n_host = len(access["t_ns"]), len(host)
    n = n_access + n_host
    host_pos = np.searchsorted(access["t_ns"], host.t_ns, side="right") + np.arange(n_host)
    is_host = np.zeros(n, dtype=bool)
    is_host[host_pos] = True
    is_access = ~is_host
    host_kind = host.event
    values: dict[str, np.ndarray] = {}
    valid: dict[str, np.ndarray | bool] = {}
    for name in (
        "t_ns",
        "event",
        "vm",
        "vcpu",
        "gpa",
        "op",
        "len",
        "source",
        "priority",
        "nid",
        "nr_to_scan",
    ):
        dtype = access[name].dtype if name in access else getattr(host, name).dtype
        column = np.zeros(n, dtype=dtype)
        if name in access:
            column[is_access] = access[name]
        if hasattr(host, name) and name != "vcpu":
            column[is_host] = getattr(host, name)
        values[name] = column
    unmap, zap_all = EVENT_CODE["unmap"], EVENT_CODE["zap_all"]
    host_valid = {
        "vm": (host_kind == unmap) | (host_kind == zap_all),
        "gpa": host_kind == unmap,
        "len": host_kind == unmap,
        "source": host_kind == EVENT_CODE["reclaim"],
        "priority": host_kind == EVENT_CODE["reclaim"],
        "nid": host_kind == EVENT_CODE["reclaim"],
        "nr_to_scan": host_kind == EVENT_CODE["shrink"],
    }
    for name in ("vm", "vcpu", "gpa", "op", "len", "source", "priority", "nid", "nr_to_scan"):
        mask = np.zeros(n, dtype=bool)
        if name in ("vm", "vcpu", "gpa", "op"):
            mask[is_access] = True
        if name in host_valid:
            mask[is_host] = host_valid[name]
        valid[name] = mask
    return build_table(n, values, valid)
