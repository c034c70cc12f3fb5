"""Trace rows as a converter makes them: int64 columns, with the log line for ordering."""

from __future__ import annotations

from typing import Any

import numpy as np

SPOOL_COLUMNS = (
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
    "nr_accesses",
    "window_ns",
    "sample_ns",
    "age",
)
"""Columns of a converter's rows (the trace's, with the line for ordering)."""


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
        """Every row added so far, as :data:`SPOOL_COLUMNS`; the rows are handed over."""
        out = {}
        for name in SPOOL_COLUMNS:
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
