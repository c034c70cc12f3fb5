"""A block's bytes as a padded numpy buffer, read in windows: one row of bytes per line.

Every reader of the fast path (:mod:`.lines`, :mod:`.payloads`) looks at a few bytes around
known positions of many lines at once. The block is copied once into a buffer with
:data:`PAD` zero bytes on each side, so that a window that starts before the first line or
runs past the last stays inside the buffer and reads zeros there: no clipping, no branch.
"""

from __future__ import annotations

import numpy as np

SPACE, COLON, DOT, OPEN, CLOSE, NEWLINE, CR = 32, 58, 46, 91, 93, 10, 13
PAD = 256
"""Zero bytes on each side of a block's buffer, so that every window stays inside it."""


def padded(data: bytes) -> np.ndarray:
    """The block's bytes with :data:`PAD` zeros on each side."""
    out = np.zeros(len(data) + 2 * PAD, dtype=np.uint8)
    out[PAD : PAD + len(data)] = np.frombuffer(data, dtype=np.uint8)
    return out


def window(buf: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """Bytes ``[at, at + width)`` of the block for every ``at``, as rows (zeros outside it).

    ``buf`` is the padded buffer and ``at`` are block offsets. Rows are taken from a
    sliding-window view of the buffer: one copy of ``width`` bytes per row, no index matrix.
    """
    view = np.lib.stride_tricks.sliding_window_view(buf, width)
    # Callers stay within PAD bytes of the block, so no clipping is needed.
    out: np.ndarray = view[at + PAD]
    return out


def last_in_window(rows: np.ndarray, byte: int) -> np.ndarray:
    """Column of the last ``byte`` in each row (-1 when none)."""
    hit = rows == byte
    width = rows.shape[1]
    last = width - 1 - np.argmax(hit[:, ::-1], axis=1)
    out: np.ndarray = np.where(hit.any(axis=1), last, -1)
    return out


def first_in_window(rows: np.ndarray, byte: int) -> np.ndarray:
    """Column of the first ``byte`` in each row (-1 when none)."""
    hit = rows == byte
    out: np.ndarray = np.where(hit.any(axis=1), np.argmax(hit, axis=1), -1)
    return out


def first_pair(
    rows: np.ndarray, first: int, second: int, skip: np.ndarray | None = None
) -> np.ndarray:
    """Column of the first ``first`` byte followed by ``second`` in each row (-1 when none).

    Columns before ``skip`` (per row) are not looked at.
    """
    hit = (rows[:, :-1] == first) & (rows[:, 1:] == second)
    if skip is not None:
        hit &= np.arange(hit.shape[1])[None, :] >= skip[:, None]
    out: np.ndarray = np.where(hit.any(axis=1), np.argmax(hit, axis=1), -1)
    return out


DIGIT_VALUE = np.full(256, 255, dtype=np.uint8)
DIGIT_VALUE[48:58] = np.arange(10)
DIGIT_VALUE[97:103] = np.arange(10, 16)
DIGIT_VALUE[65:71] = np.arange(10, 16)
"""Value of each byte as a digit (hex letters in either case); 255 for a non-digit."""


def parse_digits(
    buf: np.ndarray, lo: np.ndarray, hi: np.ndarray, width: int, base: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Unsigned numbers written in block bytes ``[lo, hi)``, and a validity mask.

    At most ``width`` digits; ``buf`` is the padded buffer. The digits are gathered
    right-aligned in a (lines x width) window and decoded by a table. Hexadecimal numbers are
    packed two digits a byte and read as one big-endian word; decimal ones (at most 15 digits)
    are weighted by powers of ten in float64, which is exact there. A span that is empty, too
    long or holds a non-digit is invalid.
    """
    n = len(lo)
    if n == 0:
        return np.zeros(0, dtype=np.uint64), np.zeros(0, dtype=bool)
    if base == 16:
        width = 8 if width <= 8 else 16
    elif width > 15:
        msg = "decimal fields of more than 15 digits are not supported"
        raise ValueError(msg)
    length = hi - lo
    valid = (length > 0) & (length <= width)
    digits = DIGIT_VALUE[window(buf, hi - width, width)]
    leading = np.arange(width)[None, :] < (width - length)[:, None]
    digits[leading] = 0
    valid &= (digits < base).all(axis=1)
    if base == 16:
        packed = (digits[:, 0::2] << 4) | digits[:, 1::2]
        word = ">u8" if width == 16 else ">u4"
        value: np.ndarray = np.ascontiguousarray(packed).view(word).ravel().astype(np.uint64)
    else:
        weights = 10.0 ** np.arange(width - 1, -1, -1)
        value = (digits @ weights).astype(np.uint64)
    return value, valid
