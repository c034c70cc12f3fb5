"""Write traces: streamed row groups, zstd, statistics on, atomically renamed into place."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING

import numpy as np

from replay.atomic import atomic_output
from replay.trace.schema import COLUMN_TYPES, ENUMS, FOOTER_KEY, TraceMeta, arrow_schema

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa
    import pyarrow.parquet as pq

ROW_GROUP_SIZE = 1 << 20
"""Rows per Parquet row group: about 8-16 MiB of columns, a unit a reader streams comfortably."""
ZSTD_LEVEL = 1
"""zstd level 1: within a few percent of level 3's size on these integer columns, and faster."""

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
    """An open trace being written; obtained from :func:`write_trace`."""

    def __init__(self, writer: pq.ParquetWriter, meta: TraceMeta) -> None:
        self._writer = writer
        self.meta = meta
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        """Append rows (a table built by :func:`build_table`)."""
        self._writer.write_table(table, row_group_size=ROW_GROUP_SIZE)
        self.rows += table.num_rows


@contextmanager
def write_trace(path: Path, meta: TraceMeta) -> Iterator[TraceSink]:
    """Open ``path`` for writing a trace; it appears only when the block ends without error.

    The footer is written last, from ``sink.meta`` as it stands then, so a converter may fill in
    what it learnt while reading (the ``observed`` counters).
    """
    import pyarrow.parquet as pq

    with atomic_output(path, "trace") as tmp, ExitStack() as stack:
        writer = pq.ParquetWriter(
            tmp,
            arrow_schema(),
            compression="zstd",
            compression_level=ZSTD_LEVEL,
            write_statistics=True,
            use_dictionary=["event", "op", "source"],
        )
        stack.callback(writer.close)
        sink = TraceSink(writer, meta)
        yield sink
        writer.add_key_value_metadata({FOOTER_KEY: sink.meta.to_json()})
