from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from replay.trace.summary import summarize_trace
from tests.builders import access, reclaim

Builder = Callable[..., Path]


def test_counts_by_kind_vm_and_source(trace_builder: Builder) -> None:
    path = trace_builder(
        [
            access(5, vm=0),
            access(6, vm=5, gpa=3 << 30),  # MMIO: between VM 5's slots
            reclaim(7, "memcg", 12),
            reclaim(8, "drop_caches", 0),
            {"t_ns": 9, "event": "unmap", "vm": 5, "gpa": 0, "len": 4096},
            {"t_ns": 10, "event": "zap_all", "vm": 0},
            {"t_ns": 11, "event": "shrink", "nr_to_scan": 3},
        ]
    )
    s = summarize_trace(str(path))
    assert s.events_by_kind == {
        "access": 2,
        "reclaim": 2,
        "shrink": 1,
        "unmap": 1,
        "zap_all": 1,
        "region": 0,
    }
    assert s.events_by_vm == {
        0: {"access": 1, "unmap": 0, "zap_all": 1, "region": 0},
        5: {"access": 1, "unmap": 1, "zap_all": 0, "region": 0},
    }
    assert s.reclaim_by_source["memcg"] == 1
    assert s.reclaim_by_source["drop_caches"] == 1
    assert s.mmio_accesses == 1
    assert (s.t_first_ns, s.t_last_ns) == (5, 11)
    doc = s.to_json()
    assert doc["events_by_kind"]["access"] == 2
    assert doc["size_bytes"] == path.stat().st_size


def test_empty_trace(trace_builder: Builder) -> None:
    s = summarize_trace(str(trace_builder([])))
    assert s.t_first_ns is None
    assert sum(s.events_by_kind.values()) == 0
