"""Write traces: streamed row groups, zstd, statistics on, atomically renamed into place."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import numpy as np

from replay.atomic import atomic_output
from replay.trace.schema import (
    COLUMN_TYPES,
    ENUMS,
    FOOTER_KEY,
    SCHEMA_VERSION,
    TraceMeta,
    arrow_schema,
)

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

ROW_GROUP_SIZE = 1 << 20
"""Rows per Parquet row group: about 8-16 MiB of columns, a unit a reader streams comfortably."""
ZSTD_LEVEL = 1
"""zstd level 1: higher levels compress these integer columns barely better, and cost write time."""

STATISTICS_COLUMNS = [n for n, kind in COLUMN_TYPES.items() if not kind.startswith("enum:")]
"""Min/max statistics on every integer column, so readers prune row groups by time, VM or gpa.
The enumerations get none: string bounds such as "access".."zap_all" prune nothing, and computing
them is a large share of the write time."""
DICTIONARY_COLUMNS = [*(n for n, k in COLUMN_TYPES.items() if k.startswith("enum:")), "vm", "vcpu"]
"""Dictionary-encode the enumerations and the low-cardinality ids; not times or addresses."""

ColumnValues = Mapping[str, np.ndarray]
ColumnValidity = Mapping[str, "np.ndarray | bool"]


def build_table(n: int, values: ColumnValues, valid: ColumnValidity) -> pa.Table:
    """Build a trace table of ``n`` rows from numpy columns.

    ``values[name]`` holds the column (enumerations as integer codes in schema order);
    ``valid[name]`` is a boolean mask, or ``True`` / ``False`` for a column valid on every row or
    on none. A column missing from ``values`` is all null.
    """
    import pyarrow as pa

    schema = arrow_schema()
    arrays = []
    for fld in schema:
        name = fld.name
        mask = valid.get(name, name in values)
        kind = COLUMN_TYPES[name]
        if mask is False or name not in values:
            arrays.append(pa.nulls(n, type=fld.type))
            continue
        column = values[name]
        null_mask = None if mask is True else ~np.asarray(mask)
        if kind.startswith("enum:"):
            codes = pa.array(column.astype(np.int8, copy=False), type=pa.int8(), mask=null_mask)
            dictionary = pa.array(ENUMS[kind.removeprefix("enum:")], type=pa.string())
            arrays.append(pa.DictionaryArray.from_arrays(codes, dictionary))
        else:
            arrays.append(pa.array(column, type=fld.type, mask=null_mask))
    return pa.Table.from_arrays(arrays, schema=schema)


class TraceSink:
    """An open trace being written; obtained from :func:`write_trace`.

    Writes run on one background thread: pyarrow encodes and compresses a row group without the
    GIL while the caller builds the next one, so producing and writing overlap on two cores.
    At most one table waits, so memory stays bounded by two row groups.
    """

    def __init__(
        self, writer: pq.ParquetWriter, meta: TraceMeta | None, pool: ThreadPoolExecutor
    ) -> None:
        self._writer = writer
        self._pool = pool
        self._pending: Future[None] | None = None
        self.meta = meta
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        """Append rows (a table built by :func:`build_table`), in call order."""
        self.flush()
        self._pending = self._pool.submit(
            self._writer.write_table, table, row_group_size=ROW_GROUP_SIZE
        )
        self.rows += table.num_rows

    def flush(self) -> None:
        """Wait for the write in flight, re-raising its error."""
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()


@contextmanager
def write_trace(
    path: Path, meta: TraceMeta | None = None, *, force: bool = True
) -> Iterator[TraceSink]:
    """Open ``path`` for writing a trace; it appears only when the block ends without error.

    Without ``force`` an existing ``path`` is never replaced, even one that appears while the
    trace is written (:func:`replay.atomic.atomic_output`).

    The footer is written last, from ``sink.meta`` as it stands then: a converter opens the
    trace without one (``meta=None``) and sets it once it has read what the footer holds (the
    VM table, the ``observed`` counters).
    """
    import pyarrow.parquet as pq

    with atomic_output(path, "trace", force=force) as tmp, ExitStack() as stack:
        writer = pq.ParquetWriter(
            tmp,
            arrow_schema(),
            compression="zstd",
            compression_level=ZSTD_LEVEL,
            write_statistics=STATISTICS_COLUMNS,
            use_dictionary=DICTIONARY_COLUMNS,
        )
        stack.callback(writer.close)
        pool = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="trace"))
        sink = TraceSink(writer, meta, pool)
        yield sink
        sink.flush()
        if sink.meta is None:
            msg = "write_trace: sink.meta was never set, so the trace has no footer"
            raise RuntimeError(msg)
        # Writers write the current version, whatever the footer was read from (a version 1
        # trace's footer is valid version 2: version 2 only added).
        meta = dataclasses.replace(sink.meta, schema_version=SCHEMA_VERSION)
        writer.add_key_value_metadata({FOOTER_KEY: meta.to_json()})
