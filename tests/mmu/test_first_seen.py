"""The first-occurrence tables the vectorized engine picks its candidates with."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.mmu.first_seen import FirstSeen


@settings(max_examples=50)
@given(st.lists(st.lists(st.integers(0, 30), max_size=40), min_size=1, max_size=6), st.booleans())
def test_first_seen_marks_each_ids_first_position(calls: list[list[int]], near_top: bool) -> None:
    """Against a dictionary, over several calls on one table (stale marks must not count), also
    when the rising base is about to overflow and the table is cleared."""
    seen = FirstSeen(31)
    if near_top:
        seen.base = np.iinfo(np.int32).max - 50
    for ids in calls:
        pos = np.arange(0, 3 * len(ids), 3)  # ascending, not 0..n-1
        got = seen(np.array(ids, dtype=np.int64), pos)
        first: dict[int, int] = {}
        for i, x in enumerate(ids):
            first.setdefault(x, i)
        assert got.tolist() == [first[x] == i for i, x in enumerate(ids)]
