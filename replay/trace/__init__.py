"""The trace: schema v1 in code, reading in validated batches, atomic writing."""

from __future__ import annotations

from replay.trace.reader import EventBatch, TraceFile, count_mmio, iter_batches, open_trace
from replay.trace.schema import Memslot, TraceMeta, VmSpec

__all__ = [
    "EventBatch",
    "Memslot",
    "TraceFile",
    "TraceMeta",
    "VmSpec",
    "count_mmio",
    "iter_batches",
    "open_trace",
]
