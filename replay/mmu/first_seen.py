"""First-occurrence tests over ids, without sorting: which position is the first of its id."""

from __future__ import annotations

import numpy as np


class FirstSeen:
    """Tells, for (id, position) pairs, which position is the first of its id.

    A scatter-maximum into a table indexed by id, then a gather: cheaper than ``np.unique``,
    which sorts. Each call marks with values above every earlier call's (a rising base, less
    the position), so marks left by earlier calls lose to the new ones and the table is never
    cleared between calls, only when the base would overflow.
    """

    def __init__(self, size: int) -> None:
        self.marks = np.zeros(max(size, 1), dtype=np.int32)
        self.base = 0

    def __call__(self, ids: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """``pos`` ascending and distinct; True where ``pos`` is the first of its id."""
        if not len(pos):
            return np.zeros(0, dtype=bool)
        span = int(pos[-1]) + 1
        if self.base + span >= np.iinfo(np.int32).max:
            self.marks[:] = 0
            self.base = 0
        value = (self.base + span - pos).astype(np.int32)  # above base, larger for earlier
        np.maximum.at(self.marks, ids, value)
        self.base += span
        out: np.ndarray = self.marks[ids] == value
        return out
