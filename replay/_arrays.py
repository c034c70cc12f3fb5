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
