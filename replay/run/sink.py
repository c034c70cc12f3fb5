"""The run's fault writer: an engine's fault rows to ``faults.parquet`` as they are produced.

:class:`FaultSink` is the :class:`~replay.mmu.results.FaultConsumer` the driver hands each
engine. It spills full row groups to Parquet on a writer thread, so memory does not grow with
the trace, and passes every row group on to the run's statistics on that thread.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from replay._arrays import to_arrow
from replay.mmu.results import FAULT_COLUMNS, as_chunk, concat_chunks, empty_chunk

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from replay.mmu.results import FaultChunk

FAULT_PARQUET: dict[str, Any] = {
    "compression": "zstd",
    # Dictionaries only where values repeat; row and time numbers grow steadily, so they are
    # stored as deltas: Parquet's default (a dictionary tried on every column) is slower to
    # write and read back and gives larger files.
    "use_dictionary": [c for c in FAULT_COLUMNS if c not in ("row", "t_ns", "gfn")],
    "column_encoding": {"row": "DELTA_BINARY_PACKED", "t_ns": "DELTA_BINARY_PACKED"},
    # Min/max statistics where a row group's range can prune a read (rows come in trace
    # order); on the other columns every row group spans nearly every value, and computing
    # them took about a sixth of the writing.
    "write_statistics": ["row", "t_ns"],
}
"""How fault tables are written (the run's ``faults.parquet``, spilled or not)."""

SPILL_ROWS = 1 << 18
"""Fault rows per row group of a spilled fault table (fixed, so the file does not depend on
how an engine chunked its output)."""


class FaultSink:
    """Fault rows as an engine produces them, in trace order.

    Without a ``spill_path`` the rows stay in memory. With one, every full row group of
    :data:`SPILL_ROWS` rows goes to that Parquet file as it fills, so memory does not grow with
    the trace; :meth:`chunks` then reads them back a row group at a time.
    """

    def __init__(
        self,
        spill_path: Path | None = None,
        metadata: dict[bytes, bytes] | None = None,
        observer: Callable[[FaultChunk], None] | None = None,
        *,
        background: bool = True,
    ) -> None:
        self.spill_path = spill_path
        self.metadata = metadata or {}
        self.observer = observer
        """Called with every chunk of rows, in order, once: each spilled row group after it
        is written (on the writer thread, if ``background``), or (in memory) all the rows when
        the sink closes."""
        self.background = background
        """Write on a writer thread (False: on the caller's, a replay kept on one core)."""
        self._pending: list[FaultChunk] = []
        """Rows added and not yet handed to the writer, as the engine gave them."""
        self._pending_rows = 0
        self._spilled_rows = 0
        """Rows handed to the writer (written, or carried to its next row group)."""
        self._carry: FaultChunk = empty_chunk()
        """The writer's rows short of a whole row group (the writer thread's alone)."""
        self._writer: Any = None
        self._pool: Any = None
        self._writing: Any = None
        self._closed = False

    def add(self, columns: FaultChunk) -> None:
        """Append rows; ``columns`` has every key of :data:`~replay.mmu.results.FAULT_COLUMNS`.

        The arrays are kept as given (the engine never writes to them again): converting them
        to the table's types, joining them into row groups and encoding those happen on the
        writer thread, when spilling in the background.
        """
        n = len(columns["row"])
        if not n:
            return
        # Kept in memory until the end: in the table's types at once (they are smaller).
        self._pending.append(as_chunk(columns) if self.spill_path is None else columns)
        self._pending_rows += n
        if self.spill_path is not None and self._pending_rows >= SPILL_ROWS:
            self._hand_over(final=False)

    @property
    def num_rows(self) -> int:
        """Rows added so far."""
        return self._spilled_rows + self._pending_rows

    def _hand_over(self, final: bool) -> None:
        """Give the rows added since the last hand-over to the writer (thread), in order."""
        chunks, self._pending = self._pending, []
        self._spilled_rows += self._pending_rows
        self._pending_rows = 0
        if not self.background:
            self._spill(chunks, final)
            return
        if self._writing is not None:
            self._writing.result()  # raises what the last write raised
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fault-writer")
        self._writing = self._pool.submit(self._spill, chunks, final)

    def _spill(self, chunks: list[FaultChunk], final: bool) -> None:
        """Write every full row group of the carried rows and ``chunks`` (all, if ``final``).

        Row groups of :data:`SPILL_ROWS` rows whatever the engine's chunks, so the file does not
        depend on them; the rows of a last, partial group are carried to the next call.
        """
        import pyarrow.parquet as pq

        if chunks:
            merged = concat_chunks([self._carry, *(as_chunk(c) for c in chunks)])
        else:
            merged = self._carry
        rows = len(merged["row"])
        start = 0
        while rows - start >= SPILL_ROWS or (final and rows > start):
            end = min(start + SPILL_ROWS, rows)
            group = {k: v[start:end] for k, v in merged.items()}
            table = fault_table(group)
            if self._writer is None:
                assert self.spill_path is not None
                self._writer = pq.ParquetWriter(self.spill_path, table.schema, **FAULT_PARQUET)
            self._writer.write_table(table, SPILL_ROWS)
            if self.observer is not None:
                self.observer(group)
            start = end
        # (Views would keep the whole merged group alive; nothing is left after the last one.)
        self._carry = {k: v[start:] for k, v in merged.items()} if start < rows else empty_chunk()

    def _drain(self) -> None:
        """Wait for the writer thread; re-raise what it raised."""
        if self._pool is not None:
            writing, self._writing = self._writing, None
            self._pool.shutdown(wait=True)
            self._pool = None
            if writing is not None:
                writing.result()

    def close(self) -> None:
        """Flush everything to the spill file (if any); no more rows may be added."""
        if self._closed:
            return
        self._closed = True
        if self.spill_path is None:
            if self._pending_rows:
                merged = concat_chunks(self._pending)
                self._pending = [merged]
                if self.observer is not None:
                    self.observer(merged)
            return
        try:
            self._hand_over(final=True)
        finally:
            self._drain()
        if self._writer is None:
            import pyarrow.parquet as pq

            table = fault_table(empty_chunk())
            pq.write_table(
                table.replace_schema_metadata(self.metadata), self.spill_path, **FAULT_PARQUET
            )
        else:
            if self.metadata:
                self._writer.add_key_value_metadata(self.metadata)
            self._writer.close()

    def __getstate__(self) -> dict[str, Any]:
        """A closed sink's state, to hand it to another process (:mod:`replay.run.procs`).

        Its rows or its file, without the writer, the writer thread or the observer: all of
        them are done with once the sink is closed.
        """
        if not self._closed:
            raise TypeError("only a closed FaultSink can go to another process")
        return {**self.__dict__, "_writer": None, "_pool": None, "_writing": None, "observer": None}

    def chunks(self, columns: tuple[str, ...] | None = None) -> Iterator[FaultChunk]:
        """The rows in trace order, a chunk at a time (reading back a spilled file)."""
        names = tuple(columns or FAULT_COLUMNS)
        if self.spill_path is None or not self._closed:
            if self._pending_rows:
                yield concat_chunks([as_chunk(c) for c in self._pending], names)
            return
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(self.spill_path)
        for rb in pf.iter_batches(batch_size=SPILL_ROWS, columns=list(names)):
            yield {k: _column(rb.column(k), k) for k in names}

    def arrays(self) -> FaultChunk:
        """All rows at once (for small replays and tests)."""
        parts = list(self.chunks())
        if not parts:
            return empty_chunk()
        return concat_chunks(parts)


def _column(col: Any, name: str) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_dictionary(col.type):
        col = col.indices
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=FAULT_COLUMNS[name])


def fault_table(chunk: FaultChunk) -> Any:
    """Fault rows as an Arrow table; enumerations dictionary-encoded in code order."""
    import pyarrow as pa

    from replay.mmu.config import ATTRIBUTIONS, CAUSES, REFILLS

    enums = {"cause": CAUSES, "refill": REFILLS, "attribution": ATTRIBUTIONS}
    arrays = {}
    for name in FAULT_COLUMNS:
        values = chunk[name]
        if name in enums:
            arrays[name] = pa.DictionaryArray.from_arrays(
                to_arrow(values.astype(np.int8)), pa.array(enums[name], pa.string())
            )
        else:
            arrays[name] = to_arrow(values)
    return pa.table(arrays)
