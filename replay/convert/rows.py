"""Trace rows as a converter makes them: int64 columns, with the log line for ordering."""

from __future__ import annotations

from typing import Any

import numpy as np

BASE_COLUMNS = (
    "t_ns",
    "line",
    "event",
    "vm",
    "vcpu",
    "gpa",
    "len",
    "op",
    "source",
    "priority",
    "nid",
)
REGION_COLUMNS = ("nr_accesses", "window_ns", "sample_ns", "age")
"""Columns only DAMON's region rows use: carried only by blocks that have such rows, so that
logs without DAMON lines pay nothing for them (:func:`complete` fills them in)."""
SPOOL_COLUMNS = BASE_COLUMNS + REGION_COLUMNS
"""Columns of a converter's rows (the trace's, with the line for ordering)."""


def complete(cols: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``cols`` with every column of :data:`SPOOL_COLUMNS` (absent ones -1)."""
    n = len(cols["t_ns"])
    for name in REGION_COLUMNS:
        if name not in cols:
            cols[name] = np.full(n, -1, dtype=np.int64)
    return cols


def joined(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rows ``a`` then rows ``b``, with the region columns if either has them."""
    if a.keys() != b.keys():
        a, b = complete(a), complete(b)
    return {k: np.concatenate([a[k], b[k]]) for k in a}


class Rows:
    """Trace rows of a block, as columns (provisional VM indices; -1 where a row has none)."""

    def __init__(self) -> None:
        self.parts: list[dict[str, np.ndarray]] = []

    def add(self, n: int, **cols: Any) -> None:
        """Add ``n`` rows; a scalar column value is the same on every row."""
        if n:
            self.parts.append(
                {k: np.broadcast_to(np.asarray(v), (n,)).copy() for k, v in cols.items()}
            )

    def take(self) -> dict[str, np.ndarray]:
        """Every row added so far, as columns; the rows are handed over.

        :data:`BASE_COLUMNS`, and the region columns when a row has them.
        """
        out = {}
        regions = any("nr_accesses" in p for p in self.parts)
        for name in SPOOL_COLUMNS if regions else BASE_COLUMNS:
            arrays = [p.get(name) for p in self.parts]
            n = [len(p["t_ns"]) for p in self.parts]
            out[name] = (
                np.concatenate(
                    [
                        a if a is not None else np.full(k, -1, dtype=np.int64)
                        for a, k in zip(arrays, n, strict=True)
                    ]
                )
                if self.parts
                else np.zeros(0, dtype=np.int64)
            )
        self.parts = []
        return out
