"""Small array helpers shared by the engine and the run summary."""

from __future__ import annotations

from typing import Any

import numpy as np


def stable_order(ids: np.ndarray) -> np.ndarray:
    """Stable argsort of small non-negative ids (numpy radix-sorts them when they fit 16 bits)."""
    if len(ids) and int(ids.min()) >= 0 and int(ids.max()) < 1 << 16:
        ids = ids.astype(np.uint16)
    order: np.ndarray = np.argsort(ids, kind="stable")
    return order


def starts_of_runs(sorted_ids: np.ndarray) -> np.ndarray:
    """True where a run of equal ids begins."""
    out = np.ones(len(sorted_ids), dtype=bool)
    out[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return out


def concat_ranges(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The integers of ranges [lo, hi), range after range (empty ranges add nothing)."""
    lengths = np.maximum(hi - lo, 0).astype(np.int64)
    total = int(lengths.sum())
    # Concatenated aranges: each range's start, less the output offset where the range begins.
    offsets = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    starts = np.repeat(lo.astype(np.int64) - offsets, lengths)
    out: np.ndarray = starts + np.arange(total, dtype=np.int64)
    return out


def to_arrow(values: np.ndarray) -> Any:
    """A numpy column as an Arrow array, without copying numbers.

    ``pyarrow.array`` would do, but on its first call it looks for pandas and imports
    ``numpy.ma`` to test for masked arrays: 35 ms of every ``replay run`` (scripts/PERFORMANCE.md,
    "Start-up"). Plain columns need neither: their buffer is the Arrow array's.

    Examples
    --------
    >>> to_arrow(np.array([3, 1, 2], dtype=np.int16)).to_pylist()
    [3, 1, 2]
    >>> to_arrow(np.array([True, False, True])).to_pylist()
    [True, False, True]
    """
    import pyarrow as pa

    if values.dtype == np.bool_:  # Arrow's booleans are bits
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    column = np.ascontiguousarray(values)
    return pa.Array.from_buffers(
        pa.from_numpy_dtype(column.dtype), len(column), [None, pa.py_buffer(column)]
    )


def arrow_table(columns: dict[str, np.ndarray]) -> Any:
    """Numpy columns as an Arrow table, each by :func:`to_arrow`."""
    import pyarrow as pa

    return pa.table({name: to_arrow(values) for name, values in columns.items()})
