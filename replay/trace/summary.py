"""What a trace holds, counted in one streamed pass that also validates every row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.trace.reader import TraceFile, count_mmio, iter_batches, open_trace
from replay.trace.schema import EVENT_CODE, EVENT_KINDS, SOURCES

if TYPE_CHECKING:
    from collections.abc import Callable


@dataclass(frozen=True)
class TraceSummary:
    """Counts of one trace (``replay inspect``)."""

    trace: TraceFile
    t_first_ns: int | None
    t_last_ns: int | None
    events_by_kind: dict[str, int]
    events_by_vm: dict[int, dict[str, int]]
    reclaim_by_source: dict[str, int]
    mmio_accesses: int

    def to_json(self) -> dict[str, Any]:
        """The ``replay inspect --json`` document (without ``schema_version``)."""
        meta = self.trace.meta
        return {
            "path": str(self.trace.path),
            "trace_schema_version": meta.schema_version,
            "coverage": meta.coverage,
            "size_bytes": self.trace.size_bytes,
            "rows": self.trace.num_rows,
            "row_groups": self.trace.num_row_groups,
            "t_first_ns": self.t_first_ns,
            "t_last_ns": self.t_last_ns,
            "events_by_kind": self.events_by_kind,
            "events_by_vm": {str(k): v for k, v in self.events_by_vm.items()},
            "reclaim_by_source": self.reclaim_by_source,
            "mmio_accesses": self.mmio_accesses,
            "vms": [vm.to_json() for vm in meta.vms],
            "provenance": meta.provenance,
            "observed": meta.observed,
        }


def summarize_trace(path: str, progress: Callable[[int, int], None] | None = None) -> TraceSummary:
    """Open, validate and count a whole trace in one streamed pass (``replay inspect``).

    Parameters
    ----------
    path : str
        The trace file.
    progress : callable, optional
        Called as ``progress(rows_done, rows_total)`` after each batch.

    Returns
    -------
    TraceSummary
        Events by kind, by VM and by reclaim source, MMIO accesses and the time span.

    Raises
    ------
    ReplayError
        What :func:`open_trace` and :func:`iter_batches` raise: the file, its footer or a row
        is not a valid trace.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_scenario, summarize_trace
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> summary = summarize_trace("quick.parquet")
    >>> summary.events_by_kind
    {'access': 20000, 'reclaim': 17, 'shrink': 1, 'unmap': 0, 'zap_all': 0, 'region': 0}
    >>> summary.mmio_accesses
    10
    """
    trace = open_trace(path)
    n_kinds = len(EVENT_KINDS)
    by_kind = np.zeros(n_kinds, dtype=np.int64)
    by_source = np.zeros(len(SOURCES), dtype=np.int64)
    by_vm = np.zeros((0x10000, n_kinds), dtype=np.int64)
    names_vm = np.array(
        [k in ("access", "unmap", "zap_all", "region") for k in EVENT_KINDS], dtype=bool
    )
    mmio = 0
    first: int | None = None
    last: int | None = None
    done = 0
    for batch in iter_batches(trace):
        if not len(batch):
            continue
        if first is None:
            first = int(batch.t_ns[0])
        last = int(batch.t_ns[-1])
        by_kind += np.bincount(batch.event, minlength=n_kinds)
        reclaim = batch.event == EVENT_CODE["reclaim"]
        by_source += np.bincount(batch.source[reclaim], minlength=len(SOURCES))
        with_vm = names_vm[batch.event]
        np.add.at(by_vm, (batch.vm[with_vm], batch.event[with_vm]), 1)
        mmio += count_mmio(trace.meta, batch)
        done += len(batch)
        if progress is not None:
            progress(done, trace.num_rows)
    per_vm = {
        vm.id: {kind: int(by_vm[vm.id, i]) for i, kind in enumerate(EVENT_KINDS) if names_vm[i]}
        for vm in trace.meta.vms
    }
    return TraceSummary(
        trace=trace,
        t_first_ns=first,
        t_last_ns=last,
        events_by_kind={k: int(by_kind[i]) for i, k in enumerate(EVENT_KINDS)},
        events_by_vm=per_vm,
        reclaim_by_source={s: int(by_source[i]) for i, s in enumerate(SOURCES)},
        mmio_accesses=mmio,
    )
