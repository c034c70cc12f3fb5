"""What an engine hands back: the fault rows, the scan rows, and two small logs.

Both engines fill the same structures, so that a run's outputs (and the equality of the two
engines) are checked on one representation. An engine writes its fault rows into a
:class:`FaultConsumer`; it knows nothing of where they go. :class:`FaultRows` keeps them in
memory (the default, and what tests use); the run writes them to Parquet as they come
(``replay.run.sink``), so the engines never import pyarrow.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterable

FAULT_COLUMNS: dict[str, type[np.generic]] = {
    "row": np.int64,
    "t_ns": np.int64,
    "vm": np.uint16,
    "vcpu": np.uint16,
    "gfn": np.uint64,
    "cause": np.int8,
    "refill": np.int8,
    "attribution": np.int8,
    "leaf_level": np.int8,
    "new_sps": np.int16,
    "relinked_sps": np.int16,
    "recycled_sps": np.int32,
    "pages_refilled": np.int32,
    "est_ns": np.int64,
}
"""Fault table columns and dtypes (enumerations as codes of ``replay.mmu.config``)."""

FaultChunk = dict[str, np.ndarray]
"""Fault rows as columns: every key of :data:`FAULT_COLUMNS`, arrays of one length."""


def as_chunk(columns: FaultChunk) -> FaultChunk:
    """``columns`` in the dtypes of :data:`FAULT_COLUMNS` (copied only where they differ)."""
    return {k: np.asarray(columns[k], dtype=dt) for k, dt in FAULT_COLUMNS.items()}


def concat_chunks(chunks: Iterable[FaultChunk], names: Iterable[str] = FAULT_COLUMNS) -> FaultChunk:
    """The rows of ``chunks`` in order, as one chunk of the columns ``names``."""
    parts = list(chunks)
    return {k: np.concatenate([c[k] for c in parts]) for k in names}


def empty_chunk() -> FaultChunk:
    """A chunk of no rows."""
    return {k: np.empty(0, dtype=dt) for k, dt in FAULT_COLUMNS.items()}


class FaultConsumer(Protocol):
    """Where an engine writes its fault rows, in trace order."""

    def add(self, columns: FaultChunk) -> None:
        """Take the next rows; ``columns`` has every key of :data:`FAULT_COLUMNS`."""

    def close(self) -> None:
        """No more rows will come (the engine has finished)."""


@runtime_checkable
class FaultStore(FaultConsumer, Protocol):
    """A consumer that keeps the rows and gives them back all at once."""

    def arrays(self) -> FaultChunk:
        """Every row added, in order."""


class FaultRows:
    """Fault rows kept in memory: an engine's consumer when it is given none."""

    def __init__(self) -> None:
        self._chunks: list[FaultChunk] = []
        self._rows = 0

    def add(self, columns: FaultChunk) -> None:
        """Append rows; ``columns`` has every key of :data:`FAULT_COLUMNS`."""
        n = len(columns["row"])
        if n:
            self._chunks.append(as_chunk(columns))
            self._rows += n

    def close(self) -> None:
        """Join the rows into one chunk (they are read whole from now on)."""
        if len(self._chunks) > 1:
            self._chunks = [concat_chunks(self._chunks)]

    @property
    def num_rows(self) -> int:
        """Rows added so far."""
        return self._rows

    def arrays(self) -> FaultChunk:
        """Every row added, in order (the arrays held, not copies, once closed)."""
        if not self._chunks:
            return empty_chunk()
        if len(self._chunks) == 1:
            return dict(self._chunks[0])
        return concat_chunks(self._chunks)


@dataclass(frozen=True)
class ScanRow:
    """One shrinker scan call (rule 12's scan table)."""

    row: int
    t_ns: int
    event: str
    """``reclaim`` (a call made by a shrink_slab pass) or ``shrink`` (a direct call, rule 10)."""
    source: str | None
    priority: int | None
    nr_to_scan: int
    freed: int
    vms: tuple[int, ...]
    """VMs zapped (zap: at most one) or whose idle vCPUs' caches were emptied (cache), in order."""
    freed_by_vm: tuple[int, ...]
    flush_ns: int
    """Estimated remote TLB flush cost of the call (rule 25): ``zap_flush_ns`` if it zapped."""


@dataclass
class EngineResult:
    """Everything a replay produced."""

    sink: FaultConsumer
    """Where the engine wrote its fault rows (closed)."""
    scans: list[ScanRow]
    sp_removals: list[tuple[int, int, int, int]]
    """``(row, t_ns, vm, sps)`` for every removal of SPs: shrinker zaps, page limit, zap_all."""
    cache_frees: list[tuple[int, int, int, int, int]]
    """``(row, t_ns, vm, vcpu, pages)`` for every vCPU cache a cache scan emptied of > 0 pages."""
    nr_deferred: int

    @property
    def faults(self) -> FaultChunk:
        """Every fault row at once, from a consumer that keeps them (:class:`FaultStore`).

        Raises
        ------
        TypeError
            The engine wrote into a consumer that does not give its rows back.
        """
        if not isinstance(self.sink, FaultStore):
            msg = f"{type(self.sink).__name__} does not keep the fault rows it was given"
            raise TypeError(msg)
        return self.sink.arrays()
