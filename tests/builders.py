"""Builders the tests share: tiny traces, their rows and a tiny scenario.

Tests import them from here; ``conftest.py`` holds only pytest's fixtures and settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from replay.trace.schema import (
    COLUMNS,
    EVENT_CODE,
    OP_CODE,
    SOURCE_CODE,
    Memslot,
    TraceMeta,
    VmSpec,
)
from replay.trace.writer import build_table, write_trace

if TYPE_CHECKING:
    from pathlib import Path


GiB = 1 << 30


def two_vm_meta() -> TraceMeta:
    """VM 0: 2 vCPUs, one 1 GiB slot at 0. VM 5: 1 vCPU, slots at 0 (1 GiB) and 4 GiB (1 GiB)."""
    return TraceMeta(
        vms=(
            VmSpec(0, "a", 2, "tdp_mmu", 4, (Memslot(0, GiB),)),
            VmSpec(5, "b", 1, "shadow_direct", 4, (Memslot(0, GiB), Memslot(4 * GiB, GiB, "2m"))),
        ),
        coverage="all-accesses",
        provenance={"generator": "tests"},
    )


Row = dict[str, Any]


def write_rows(path: Path, rows: list[Row], meta: TraceMeta | None = None) -> Path:
    """Write a trace from rows such as ``{"t_ns": 1, "event": "access", "vm": 0, ...}``."""
    meta = meta or two_vm_meta()
    n = len(rows)
    names = COLUMNS
    dtypes = {
        "t_ns": np.int64,
        "event": np.int8,
        "vm": np.uint16,
        "vcpu": np.uint16,
        "gpa": np.uint64,
        "len": np.uint64,
        "op": np.int8,
        "source": np.int8,
        "priority": np.int8,
        "nid": np.int16,
        "nr_to_scan": np.uint32,
        "nr_accesses": np.uint32,
        "window_ns": np.uint64,
        "sample_ns": np.uint64,
        "age": np.uint32,
    }
    codes = {"event": EVENT_CODE, "op": OP_CODE, "source": SOURCE_CODE}
    values = {}
    valid = {}
    for name in names:
        col = [r.get(name) for r in rows]
        mask = np.array([v is not None for v in col], dtype=bool)
        if name in codes:
            col = [codes[name][v] if v is not None else 0 for v in col]
        values[name] = np.array([0 if v is None else v for v in col], dtype=dtypes[name])
        valid[name] = mask
    with write_trace(path, meta) as sink:
        sink.write(build_table(n, values, valid))
    return path


def access(t: int, vm: int = 0, vcpu: int = 0, gpa: int = 0x1000, op: str = "read") -> Row:
    return {"t_ns": t, "event": "access", "vm": vm, "vcpu": vcpu, "gpa": gpa, "op": op}


def reclaim(t: int, source: str = "kswapd", priority: int = 12, nid: int = 0) -> Row:
    return {"t_ns": t, "event": "reclaim", "source": source, "priority": priority, "nid": nid}


def region(
    t: int,
    vm: int = 0,
    gpa: int = 0,
    length: int = 1 << 20,
    nr_accesses: int = 10,
    window_ns: int = 100_000_000,
    sample_ns: int = 5_000_000,
) -> Row:
    """A DAMON region row: ``nr_accesses`` of the window's checks found [gpa, gpa+len) accessed."""
    return {
        "t_ns": t,
        "event": "region",
        "vm": vm,
        "gpa": gpa,
        "len": length,
        "nr_accesses": nr_accesses,
        "window_ns": window_ns,
        "sample_ns": sample_ns,
    }


TINY_SCENARIO = """
[scenario]
name = "tiny"
seed = 1
duration_s = 1.0
accesses = 5000

[[vm]]
name = "a"
vcpus = 2
mmu_mode = "shadow_direct"
memslots = [{ gpa_start = 0, size = "64MiB" }]

[[vm.workload]]
kind = "uniform"
rate = 1000

[[pressure]]
kind = "kswapd"
start_s = 0.2
end_s = 0.5
interval_ms = 50
"""
