"""Task and event columns repeat: exact hashes of them, numbered by counting in buckets.

A block holds a million lines but a handful of threads and events. Each line's column is
reduced to a 64-bit hash of all its bytes (and its length), and the few distinct hashes are
numbered in order of first appearance (:func:`few_distinct`), so that each distinct text is
decoded once.
"""

from __future__ import annotations

import numpy as np

from replay.convert.buffer import window

SEGMENT_WIDTH = 64
"""Bytes of a task or event column that take part in its hash on the searching path."""
_BUCKETS = 8191
"""Hash buckets for counting distinct values (a prime; values are few)."""


def mix(*parts: np.ndarray) -> np.ndarray:
    """One 64-bit hash of several words per row (a multiply-xorshift round per word)."""
    key = np.zeros(len(parts[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for w in parts:
            key = (key ^ w) * np.uint64(0x9E3779B97F4A7C15)
            key ^= key >> np.uint64(29)
    return key


def words_key(rows: np.ndarray, length: np.ndarray | int) -> np.ndarray:
    """Exact hash of each row's first ``length`` bytes (rows of a window)."""
    width = -(-rows.shape[1] // 8) * 8
    padded_rows = np.zeros((rows.shape[0], width), dtype=np.uint8)
    padded_rows[:, : rows.shape[1]] = rows
    if np.ndim(length) == 0:
        padded_rows[:, int(length) :] = 0
    else:
        padded_rows[np.arange(width)[None, :] >= np.asarray(length)[:, None]] = 0
    as_words = padded_rows.view("<u8")
    return mix(np.broadcast_to(np.asarray(length, dtype=np.uint64), (len(rows),)), *as_words.T)


def segment_keys(buf: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A hash of each ``buf[lo:hi]``, the same wherever the segment sits in the block."""
    length = hi - lo
    longest = int(length.max()) if len(length) else 0
    width = min(SEGMENT_WIDTH, max(8, -(-longest // 8) * 8))
    return mix(
        length.astype(np.uint64), words_key(window(buf, lo, width), np.minimum(length, width))
    )


def few_distinct(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ids of ``keys`` numbered in order of first appearance, and each id's first index.

    Task and event columns take a few distinct values over many lines. Each key goes to a
    bucket; when every key equals its bucket's first key (no two values share a bucket), the
    buckets are the values: a few passes, no sort. Otherwise ``np.unique`` decides.
    """
    n = len(keys)
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    bucket = (keys % np.uint64(_BUCKETS)).astype(np.int64)
    first_in_bucket = np.full(_BUCKETS, n, dtype=np.int64)
    # Assigned in reverse, so the first line of each bucket is written last and stays.
    first_in_bucket[bucket[::-1]] = np.arange(n - 1, -1, -1)
    if np.array_equal(keys[first_in_bucket[bucket]], keys):
        used = np.flatnonzero(first_in_bucket < n)
        firsts = first_in_bucket[used]
        order = np.argsort(firsts, kind="stable")
        rank = np.full(_BUCKETS, -1, dtype=np.int64)
        rank[used[order]] = np.arange(len(used))
        return rank[bucket], firsts[order]
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank[inverse].astype(np.int64), first[order].astype(np.int64)
