"""Eight bytes of text in one ``uint64``, read with a few word operations (SWAR).

SIMD within a register: instead of one numpy pass per byte, the fast path loads the 8 bytes at
a position of every line as one little-endian word (the first byte in the lowest bits) and
compares, searches or decodes all 8 at once with shifts, masks and multiplications. Words
overlap freely: :func:`words` is a strided view in which element ``i`` is bytes ``[i, i+8)``.
"""

from __future__ import annotations

import numpy as np

from replay.convert.buffer import PAD

ZEROS = np.uint64(0x3030303030303030)
"""Eight ASCII '0' bytes."""
_LOW8 = np.uint64(0x00FF00FF00FF00FF)
_LOW16 = np.uint64(0x0000FFFF0000FFFF)
_LOW32 = np.uint64(0x00000000FFFFFFFF)
_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)
_LETTERS = np.uint64(0x0101010101010101)
_ONES = np.uint64(0x0101010101010101)
_TOP_BITS = np.uint64(0x8080808080808080)

LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)
"""Masks keeping the low k bytes of a word."""
ZERO_FILL = [np.uint64(0x3030303030303030 & ((1 << (8 * k)) - 1)) for k in range(9)]
"""'0' bytes for the low k bytes of a word."""


def words(buf: np.ndarray) -> np.ndarray:
    """The padded buffer as overlapping little-endian words: element i is bytes [i, i+8)."""
    out: np.ndarray = np.ndarray(
        shape=(len(buf) - 7,), dtype="<u8", buffer=buf, offset=0, strides=(1,)
    )
    return out


def word(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The 8 bytes at each ``at`` (block offsets) as one little-endian word."""
    out: np.ndarray = words(buf)[at + PAD]
    return out


def text_word(text: bytes) -> np.uint64:
    """``text`` (at most 8 bytes) as the low bytes of a little-endian word."""
    return np.uint64(int.from_bytes(text.ljust(8, b"\0"), "little"))


def has_pair(w: np.ndarray, first: int, second: int) -> np.ndarray:
    """Per word, bit 7 of byte i set when bytes i and i+1 are ``first`` and ``second``.

    For i < 7; exact for the lowest such i, which is all callers use.
    """
    x = (w ^ (_ONES * np.uint64(first))) | ((w >> np.uint64(8)) ^ (_ONES * np.uint64(second)))
    x |= np.uint64(0xFF) << np.uint64(56)  # byte 7 has no follower inside the word
    with np.errstate(over="ignore"):
        found: np.ndarray = (x - _ONES) & ~x & _TOP_BITS
    return found


def lowest_byte(mask: np.ndarray) -> np.ndarray:
    """Index of the lowest byte flagged in each nonzero mask (8 where none)."""
    with np.errstate(over="ignore"):
        low = mask & (~mask + np.uint64(1))
    out: np.ndarray = np.where(mask != 0, np.bitwise_count(low - np.uint64(1)) // 8, 8)
    return out.astype(np.int64)


def swar_decimal_words(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of words holding 8 ASCII decimal digits (first digit in the lowest byte).

    Each word is reduced in three multiply-add steps (pairs, quads, the whole): a handful of
    operations per line instead of one per digit.
    """
    w = w - ZEROS
    ok = ((w + np.uint64(0x7676767676767676)) | w) & _TOP_BITS == 0
    with np.errstate(over="ignore"):
        w = (w * np.uint64(10) + (w >> np.uint64(8))) & _LOW8
        w = (w * np.uint64(100) + (w >> np.uint64(16))) & _LOW16
        w = (w * np.uint64(10000) + (w >> np.uint64(32))) & _LOW32
    return w, ok


def swar_hex_words(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of words holding 8 ASCII hex digits (first in the lowest byte), and validity."""
    lower = w | np.uint64(0x2020202020202020)
    with np.errstate(over="ignore"):
        # A byte is a digit when in '0'-'9' or (lower-cased) 'a'-'f'.
        is_digit = _in_range(w, 0x30, 0x39)
        is_letter = _in_range(lower, 0x61, 0x66)
    ok = (is_digit | is_letter) == _TOP_BITS
    return _hex_word(w), ok


def _in_range(w: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """Bit 7 of each byte set when that byte is within [lo, hi] (bytes below 0x80)."""
    low7 = w & np.uint64(0x7F7F7F7F7F7F7F7F)
    above_lo = (low7 + _ONES * np.uint64(0x80 - lo)) & _TOP_BITS
    below_hi = ~(low7 + _ONES * np.uint64(0x7F - hi)) & _TOP_BITS
    out: np.ndarray = above_lo & below_hi & ~(w & _TOP_BITS)
    return out


def _hex_word(w: np.ndarray) -> np.ndarray:
    """The 32-bit value of a word of 8 ASCII hex digits (not checked)."""
    v = (w & _NIBBLES) + np.uint64(9) * ((w >> np.uint64(6)) & _LETTERS)
    v = ((v & np.uint64(0x000F000F000F000F)) << np.uint64(4)) | (
        (v >> np.uint64(8)) & np.uint64(0x000F000F000F000F)
    )
    v = ((v & np.uint64(0x000000FF000000FF)) << np.uint64(8)) | (
        (v >> np.uint64(16)) & np.uint64(0x000000FF000000FF)
    )
    v = ((v & np.uint64(0xFFFF)) << np.uint64(16)) | ((v >> np.uint64(32)) & np.uint64(0xFFFF))
    out: np.ndarray = v
    return out


def hex_digits_word(w: np.ndarray, keep: int) -> np.ndarray:
    """A word whose top ``keep`` bytes are kept and the others set to '0'."""
    drop = 8 - keep
    out: np.ndarray = (w & ~LOW_BYTES[drop]) | ZERO_FILL[drop]
    return out


def digits_word(w: np.ndarray, keep: int) -> np.ndarray:
    """A word whose top ``keep`` bytes are kept and the others set to '0' (and spaces to '0')."""
    drop = 8 - keep
    high = ~LOW_BYTES[drop]
    out: np.ndarray = ((w & high) | ZERO_FILL[drop]) | ZEROS
    return out


_ZERO_FILLS = np.array(ZERO_FILL, dtype=np.uint64)


def decimal_spans(buf: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unsigned decimal numbers written in block bytes ``[lo, hi)`` (1 to 16 digits), and validity.

    Two words per number, each reduced by :func:`swar_decimal_words`: the digits of a span
    of any length per line are right-aligned in the two words that end at ``hi``, the bytes
    before the span set to '0' (no table lookup, no float arithmetic).
    """
    length = hi - lo
    ok = (length > 0) & (length <= 16)
    low_keep = np.clip(length, 0, 8)
    high_keep = np.clip(length - 8, 0, 8)
    out = []
    for end, keep in ((hi, low_keep), (hi - 8, high_keep)):
        drop = 8 - keep
        w = (word(buf, end - 8) & ~LOW_BYTES[drop]) | _ZERO_FILLS[drop]
        value, good = swar_decimal_words(w)
        out.append(value)
        ok &= good
    value = out[1] * np.uint64(100_000_000) + out[0]
    return value, ok
