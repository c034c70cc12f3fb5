"""Small array helpers shared by the engine and the run summary."""

from __future__ import annotations

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
