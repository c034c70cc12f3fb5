"""Cut a block of log text into lines and their common fields, for all lines at once.

Every layout (ftrace, perf script, trace-cmd report) puts the same things in the same order:
``HEAD [CPU] [FLAGS] SECONDS.FRACTION: EVENT: PAYLOAD``, where HEAD names the task (``comm-pid``,
``comm tid``, ``comm pid/tid``, optionally ``(tgid)``). A regular expression per line runs at
about 0.25 M lines/s here; numpy over the block's bytes is faster:

- the tools pad their columns to fixed widths, so most lines of a block put the ": " after the
  time stamp, its decimal point and the ``[CPU]`` brackets at the same columns. The columns are
  learnt from a sample of the block, and every line that has those bytes where expected is read
  at fixed columns from one window of its first bytes (:func:`_fixed`);
- the other lines (headers, tasks whose pid is wider, old layouts) are searched: the first
  ": " of a line ends the time stamp, the second the event name, the last space before the
  time stamp starts it, the last ``[`` before it opens the CPU (:func:`_general`);
- digits are decoded by table lookup; hexadecimal numbers are packed straight into words;
- task and event columns repeat (a few threads, a few events), so they are hashed exactly and
  counted in hash buckets (:func:`few_distinct`); each distinct text is decoded once.

Lines neither path can split (comments, blank lines, ``cpus=N``, lost-event notices, damage)
go to the slow path with their line numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SPACE, COLON, DOT, OPEN, CLOSE, NEWLINE, CR = 32, 58, 46, 91, 93, 10, 13
MAX_INT_DIGITS = 12
MAX_FRACTION_DIGITS = 9
MSG_PAD = 24
"""Spaces looked past at the start of a payload (trace-cmd pads event names to 20 columns)."""


@dataclass
class LineBlock:
    """The lines of one block of text, split into fields where the fast path could."""

    data: bytes
    buf: np.ndarray
    """The bytes, padded with :data:`PAD` zeros on each side."""
    starts: np.ndarray
    ends: np.ndarray
    """Exclusive; the newline and a carriage return are left out."""
    line_no: np.ndarray
    ok: np.ndarray
    """Lines the fast path split; the others go to the slow path."""
    t_ns: np.ndarray
    cpu: np.ndarray
    head_id: np.ndarray
    """Index into ``heads`` (valid where ``ok``)."""
    heads: list[str]
    """The text before ``[CPU]`` of each distinct task column, stripped."""
    event_id: np.ndarray
    events: list[str]
    """Each distinct event column, stripped (``kvm_page_fault``, ``kvm:kvm_page_fault``)."""
    msg_start: np.ndarray
    _spaces: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.starts)

    def spaces(self) -> np.ndarray:
        """Positions of every space in the block (found once, on first use)."""
        if self._spaces is None:
            raw = self.buf[PAD : len(self.buf) - PAD]
            self._spaces = np.flatnonzero(raw == SPACE).astype(np.int64)
        return self._spaces

    def text(self, i: int) -> str:
        """Line ``i`` as text (for the slow path and for messages)."""
        return self.data[self.starts[i] : self.ends[i]].decode("utf-8", "replace")

    def payload(self, i: int) -> str:
        """The payload of fast-path line ``i``."""
        return self.data[self.msg_start[i] : self.ends[i]].decode("utf-8", "replace")


PAD = 256
"""Zero bytes on each side of a block's buffer, so that every window stays inside it."""


def _padded(data: bytes) -> np.ndarray:
    """The block's bytes with :data:`PAD` zeros on each side."""
    out = np.zeros(len(data) + 2 * PAD, dtype=np.uint8)
    out[PAD : PAD + len(data)] = np.frombuffer(data, dtype=np.uint8)
    return out


def _window(padded: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """Bytes ``[at, at + width)`` of the block for every ``at``, as rows (zeros outside it).

    Rows are taken from a sliding-window view of the padded buffer: one copy of ``width``
    bytes per row, no index matrix.
    """
    view = np.lib.stride_tricks.sliding_window_view(padded, width)
    # Callers stay within PAD bytes of the block, so no clipping is needed.
    out: np.ndarray = view[at + PAD]
    return out


def _last_in_window(window: np.ndarray, byte: int) -> np.ndarray:
    """Column of the last ``byte`` in each row (-1 when none)."""
    hit = window == byte
    width = window.shape[1]
    last = width - 1 - np.argmax(hit[:, ::-1], axis=1)
    out: np.ndarray = np.where(hit.any(axis=1), last, -1)
    return out


def _first_in_window(window: np.ndarray, byte: int) -> np.ndarray:
    """Column of the first ``byte`` in each row (-1 when none)."""
    hit = window == byte
    out: np.ndarray = np.where(hit.any(axis=1), np.argmax(hit, axis=1), -1)
    return out


_DIGIT_VALUE = np.full(256, 255, dtype=np.uint8)
_DIGIT_VALUE[48:58] = np.arange(10)
_DIGIT_VALUE[97:103] = np.arange(10, 16)
_DIGIT_VALUE[65:71] = np.arange(10, 16)
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
    digits = _DIGIT_VALUE[_window(buf, hi - width, width)]
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


SEGMENT_WIDTH = 64
"""Bytes of a task or event column that take part in its hash on the searching path."""


def _segment_keys(buf: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A hash of each ``buf[lo:hi]``, the same wherever the segment sits in the block."""
    length = hi - lo
    longest = int(length.max()) if len(length) else 0
    width = min(SEGMENT_WIDTH, max(8, -(-longest // 8) * 8))
    return _mix(
        length.astype(np.uint64), _words_key(_window(buf, lo, width), np.minimum(length, width))
    )


_ZEROS = np.uint64(0x3030303030303030)
_LOW8 = np.uint64(0x00FF00FF00FF00FF)
_LOW16 = np.uint64(0x0000FFFF0000FFFF)
_LOW32 = np.uint64(0x00000000FFFFFFFF)


def swar_decimal_words(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of words holding 8 ASCII decimal digits (first digit in the lowest byte).

    Each word is reduced in three multiply-add steps (pairs, quads, the whole): a handful of
    operations per line instead of one per digit.
    """
    w = words - _ZEROS
    ok = ((w + np.uint64(0x7676767676767676)) | w) & np.uint64(0x8080808080808080) == 0
    with np.errstate(over="ignore"):
        w = (w * np.uint64(10) + (w >> np.uint64(8))) & _LOW8
        w = (w * np.uint64(100) + (w >> np.uint64(16))) & _LOW16
        w = (w * np.uint64(10000) + (w >> np.uint64(32))) & _LOW32
    return w, ok


_NIBBLES = np.uint64(0x0F0F0F0F0F0F0F0F)
_LETTERS = np.uint64(0x0101010101010101)


def swar_hex_words(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Values of words holding 8 ASCII hex digits (first in the lowest byte), and validity."""
    lower = w | np.uint64(0x2020202020202020)
    ones = np.uint64(0x0101010101010101)
    with np.errstate(over="ignore"):
        # A byte is a digit when in '0'-'9' or (lower-cased) 'a'-'f'.
        is_digit = _in_range(w, 0x30, 0x39, ones)
        is_letter = _in_range(lower, 0x61, 0x66, ones)
    ok = (is_digit | is_letter) == np.uint64(0x8080808080808080)
    return _hex_word(w), ok


def _in_range(w: np.ndarray, lo: int, hi: int, ones: np.uint64) -> np.ndarray:
    """Bit 7 of each byte set when that byte is within [lo, hi] (bytes below 0x80)."""
    top = np.uint64(0x8080808080808080)
    low7 = w & np.uint64(0x7F7F7F7F7F7F7F7F)
    above_lo = (low7 + ones * np.uint64(0x80 - lo)) & top
    below_hi = ~(low7 + ones * np.uint64(0x7F - hi)) & top
    out: np.ndarray = above_lo & below_hi & ~(w & top)
    return out


def _hex_digits_word(w: np.ndarray, keep: int) -> np.ndarray:
    """A word whose top ``keep`` bytes are kept and the others set to '0'."""
    drop = 8 - keep
    out: np.ndarray = (w & ~_LOW_BYTES[drop]) | _ZERO_FILL[drop]
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


def _words(buf: np.ndarray) -> np.ndarray:
    """The padded buffer as overlapping little-endian words: element i is bytes [i, i+8)."""
    out: np.ndarray = np.ndarray(
        shape=(len(buf) - 7,), dtype="<u8", buffer=buf, offset=0, strides=(1,)
    )
    return out


def _word(buf: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The 8 bytes at each ``at`` (block offsets) as one little-endian word."""
    out: np.ndarray = _words(buf)[at + PAD]
    return out


def text_word(text: bytes) -> np.uint64:
    """``text`` (at most 8 bytes) as the low bytes of a little-endian word."""
    return np.uint64(int.from_bytes(text.ljust(8, b"\0"), "little"))


def has_pair(w: np.ndarray, first: int, second: int) -> np.ndarray:
    """Per word, bit 7 of byte i set when bytes i and i+1 are ``first`` and ``second``.

    For i < 7; exact for the lowest such i, which is all callers use.
    """
    ones = np.uint64(0x0101010101010101)
    x = (w ^ (ones * np.uint64(first))) | ((w >> np.uint64(8)) ^ (ones * np.uint64(second)))
    x |= np.uint64(0xFF) << np.uint64(56)  # byte 7 has no follower inside the word
    with np.errstate(over="ignore"):
        found: np.ndarray = (x - ones) & ~x & np.uint64(0x8080808080808080)
    return found


def lowest_byte(mask: np.ndarray) -> np.ndarray:
    """Index of the lowest byte flagged in each nonzero mask (8 where none)."""
    with np.errstate(over="ignore"):
        low = mask & (~mask + np.uint64(1))
    out: np.ndarray = np.where(mask != 0, np.bitwise_count(low - np.uint64(1)) // 8, 8)
    return out.astype(np.int64)


_LOW_BYTES = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [2**64 - 1], dtype=np.uint64)
"""Masks keeping the low k bytes of a word."""


def _mix(*words: np.ndarray) -> np.ndarray:
    key = np.zeros(len(words[0]), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for w in words:
            key = (key ^ w) * np.uint64(0x9E3779B97F4A7C15)
            key ^= key >> np.uint64(29)
    return key


_BUCKETS = 8191
"""Hash buckets for counting distinct values (a prime; values are few)."""


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


TS_WINDOW = 24
"""Bytes before a time stamp's ": " searched for its start (seconds and up to 9 decimals)."""
BRACKET_WINDOW = 24
"""Bytes before a time stamp searched for ``[CPU]`` (flags and padding lie between)."""
HEAD_WINDOW = 160
"""Bytes from a line's start searched for its first two ": " on the general path."""
EVENT_WINDOW = 48
"""Bytes after the time stamp searched for the end of the event column."""
SAMPLE_LINES = 512
"""Lines read on the general path to learn a block's column geometry."""


@dataclass(frozen=True)
class _Fields:
    """What the splitter finds on each line of a subset (``ok`` marks success)."""

    ok: np.ndarray
    t_ns: np.ndarray
    cpu: np.ndarray
    head_end: np.ndarray
    event_lo: np.ndarray
    event_hi: np.ndarray
    msg_start: np.ndarray


def _first_pair(
    window: np.ndarray, first: int, second: int, skip: np.ndarray | None = None
) -> np.ndarray:
    """Column of the first ``first`` byte followed by ``second`` in each row (-1 when none)."""
    hit = (window[:, :-1] == first) & (window[:, 1:] == second)
    if skip is not None:
        hit &= np.arange(hit.shape[1])[None, :] >= skip[:, None]
    out: np.ndarray = np.where(hit.any(axis=1), np.argmax(hit, axis=1), -1)
    return out


def _timestamp(buf: np.ndarray, p1: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Time stamps ending at ``p1``: ns, validity, and where each starts."""
    before = _window(buf, p1 - TS_WINDOW, TS_WINDOW)
    space = _last_in_window(before, SPACE)
    ts_start = p1 - TS_WINDOW + space + 1
    dot_col = _last_in_window(before, DOT)
    dot = p1 - TS_WINDOW + dot_col
    ok = (space >= 0) & (dot_col > space) & (ts_start > starts)
    seconds, ok_s = parse_digits(buf, ts_start, np.where(ok, dot, ts_start), MAX_INT_DIGITS)
    frac, ok_f = parse_digits(buf, dot + 1, np.where(ok, p1, dot + 1), MAX_FRACTION_DIGITS)
    digits = p1 - dot - 1
    scale = 10 ** np.clip(MAX_FRACTION_DIGITS - digits, 0, MAX_FRACTION_DIGITS)
    t = seconds.astype(np.int64) * 1_000_000_000 + frac.astype(np.int64) * scale
    return t, ok & ok_s & ok_f, ts_start


def _msg_start(buf: np.ndarray, p2: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Where a payload starts: after the event's ": " and any padding (trace-cmd's)."""
    out: np.ndarray = np.minimum(p2 + 2, ends)
    padded = np.flatnonzero(buf[out + PAD] == SPACE)
    if len(padded):
        at = out[padded]
        first_char = np.argmax(_window(buf, at, MSG_PAD) != SPACE, axis=1)
        out[padded] = np.minimum(at + first_char, ends[padded])
    return out


def _general(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> _Fields:
    """Split any line: search for the first two ": " and read back from the first."""
    head = _window(buf, starts, HEAD_WINDOW)
    limit = np.minimum(ends - starts, HEAD_WINDOW)
    head = np.where(np.arange(HEAD_WINDOW)[None, :] < limit[:, None], head, 0)
    c1 = _first_pair(head, COLON, SPACE)
    p1 = starts + c1
    t_ns, ok, ts_start = _timestamp(buf, p1, starts)
    ok &= c1 >= 0
    # A trace-cmd instance prefix ("name: ") comes before the time stamp: try the next ": ".
    retry = ~ok & (c1 >= 0)
    if retry.any():
        c1b = _first_pair(head, COLON, SPACE, skip=c1 + 2)
        p1b = starts + c1b
        t_b, ok_b, ts_b = _timestamp(buf, p1b, starts)
        ok_b &= c1b >= 0
        c1 = np.where(retry, c1b, c1)
        p1 = np.where(retry, p1b, p1)
        t_ns = np.where(retry, t_b, t_ns)
        ts_start = np.where(retry, ts_b, ts_start)
        ok = np.where(retry, ok_b, ok)
    c2 = _first_pair(head, COLON, SPACE, skip=c1 + 2)
    ok &= (c2 > c1) & (c1 >= 0)
    p2 = starts + c2
    # [CPU] is the last "[...]" before the time stamp.
    before_ts = _window(buf, ts_start - BRACKET_WINDOW, BRACKET_WINDOW)
    open_col = _last_in_window(before_ts, OPEN)
    close_col = _last_in_window(before_ts, CLOSE)
    bracket = ts_start - BRACKET_WINDOW + open_col
    close = ts_start - BRACKET_WINDOW + close_col
    ok &= (open_col >= 0) & (close_col > open_col) & (bracket >= starts)
    cpu, ok_cpu = parse_digits(buf, bracket + 1, close, 5)
    ok &= ok_cpu
    return _Fields(ok, t_ns, cpu.astype(np.int64), bracket, p1 + 2, p2, _msg_start(buf, p2, ends))


@dataclass(frozen=True)
class _Geometry:
    """Columns most lines of a block share: the tools pad their fields to fixed widths."""

    colon: int
    """Column of the ": " after the time stamp."""
    dot: int
    """Column of the time stamp's decimal point."""
    bracket: int
    """Column of the "[" that opens the CPU."""
    close: int
    """Column of the "]" that closes it."""
    event_width: int
    """Bytes searched for the end of the event column (its longest in the sample, and some)."""
    event_len: int
    """The most common length of the event column in the sample."""


SECONDS_COLUMNS = 5
"""Columns before the decimal point read as seconds on the fixed path (`%5lu`, space-padded)."""


def _learn(fields: _Fields, starts: np.ndarray, buf: np.ndarray) -> _Geometry | None:
    """The most common column layout among lines the general path split."""
    ok = fields.ok
    if not ok.any():
        return None
    s = starts[ok]
    colon = fields.event_lo[ok] - 2 - s
    bracket = fields.head_end[ok] - s
    values, counts = np.unique(np.stack([colon, bracket]), axis=1, return_counts=True)
    c, b = values[:, int(np.argmax(counts))].tolist()
    row = int(np.flatnonzero((colon == c) & (bracket == b))[0])
    line = buf[s[row] + PAD : s[row] + PAD + c + 1].tobytes()
    dot = line.rfind(b".", 0, c)
    close = line.find(b"]", b)
    if dot < 0 or close < 0 or c - dot - 1 not in (6, 9) or dot - SECONDS_COLUMNS <= close:
        return None
    lengths = fields.event_hi[ok] - fields.event_lo[ok]
    values, counts = np.unique(lengths, return_counts=True)
    usual = int(values[int(np.argmax(counts))])
    return _Geometry(c, dot, b, close, min(EVENT_WINDOW, int(lengths.max()) + 8), usual)


_DIGIT_OR_SPACE = _DIGIT_VALUE.copy()
_DIGIT_OR_SPACE[SPACE] = 0


def _words_key(window: np.ndarray, length: np.ndarray | int) -> np.ndarray:
    """Exact hash of each row's first ``length`` bytes (rows of a window)."""
    width = -(-window.shape[1] // 8) * 8
    rows = np.zeros((window.shape[0], width), dtype=np.uint8)
    rows[:, : window.shape[1]] = window
    if np.ndim(length) == 0:
        rows[:, int(length) :] = 0
    else:
        rows[np.arange(width)[None, :] >= np.asarray(length)[:, None]] = 0
    words = rows.view("<u8")
    return _mix(np.broadcast_to(np.asarray(length, dtype=np.uint64), (len(rows),)), *words.T)


@dataclass(frozen=True)
class _FixedFields(_Fields):
    head_key: np.ndarray
    event_key: np.ndarray


_ZERO_FILL = [np.uint64(0x3030303030303030 & ((1 << (8 * k)) - 1)) for k in range(9)]
"""'0' bytes for the low k bytes of a word."""


def _digits_word(w: np.ndarray, keep: int) -> np.ndarray:
    """A word whose top ``keep`` bytes are kept and the others set to '0' (and spaces to '0')."""
    drop = 8 - keep
    high = ~_LOW_BYTES[drop]
    out: np.ndarray = ((w & high) | _ZERO_FILL[drop]) | _ZEROS
    return out


def _fixed(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, geo: _Geometry) -> _FixedFields:
    """Split lines that follow the block's geometry: every field at a known column.

    Everything is read as 8-byte words at known offsets: the separators compared as words,
    the digits decoded by SWAR arithmetic, the task column hashed from the words covering it,
    the end of the event column found by a word-wise search for ": ".
    """
    c, d, b, e = geo.colon, geo.dot, geo.bracket, geo.close
    n = len(starts)
    # One window of each line's first bytes, seen as words at every byte offset: word(k) is
    # bytes [k, k+8) of every line, a strided view, no gather.
    width = -(-(c + 2 + geo.event_width + 8) // 8) * 8
    window = np.ascontiguousarray(_window(buf, starts, width))
    as_words = np.ndarray(
        shape=(n, width - 7), dtype="<u8", buffer=window, offset=0, strides=(width, 1)
    )

    def word(k: int) -> np.ndarray:
        column: np.ndarray = as_words[:, k]
        return column

    colon = word(c)
    ok = (ends - starts > c + 2) & ((colon & np.uint64(0xFFFF)) == np.uint64(0x203A))
    # Seconds: the 5 columns before the point (spaces before the digits, a space before them).
    sec = word(d - 8)
    ok &= ((sec >> np.uint64(16)) & np.uint64(0xFF)) == np.uint64(SPACE)
    ok &= ((sec >> np.uint64(56)) & np.uint64(0xFF)) != np.uint64(SPACE)
    seconds, ok_s = swar_decimal_words(_digits_word(sec, SECONDS_COLUMNS))
    # The point and the decimals.
    decimals = c - d - 1
    ok &= (word(d) & np.uint64(0xFF)) == np.uint64(DOT)
    if decimals == 6:
        frac, ok_f = swar_decimal_words(_digits_word(word(d - 1), 6))
        frac_ns = frac * np.uint64(1000)
    else:
        frac, ok_f = swar_decimal_words(word(d + 1))
        last = _DIGIT_VALUE[window[:, c - 1]]
        frac_ns = frac * np.uint64(10) + last
        ok_f &= last < 10
    ok &= ok_s & ok_f
    t_ns = (seconds * np.uint64(1_000_000_000) + frac_ns).astype(np.int64)
    # [CPU]
    cpu_word = word(e - 7)  # its last byte is the "]"
    ok &= (cpu_word >> np.uint64(56)) == np.uint64(CLOSE)
    ok &= window[:, b] == OPEN
    cpu, ok_c = swar_decimal_words(_digits_word(cpu_word << np.uint64(8), e - b - 1))
    ok &= ok_c
    # The task column [0, b): the words covering it, the last one overlapping.
    parts = [word(k) for k in range(0, max(b - 8, 0), 8)]
    parts.append(word(max(b - 8, 0)) & _LOW_BYTES[min(b, 8)])
    head_key = _mix(np.full(n, b, dtype=np.uint64), *parts)
    # The event column ends at the next ": ": at the sample's most common length on most
    # lines; searched in overlapping words 7 bytes apart on the others.
    event_lo = starts + c + 2
    usual = geo.event_len
    ev_len = np.full(n, -1, dtype=np.int64)
    if usual > 0:
        at_usual = (word(c + 2 + usual) & np.uint64(0xFFFF)) == np.uint64(0x203A)
        ev_len[at_usual] = usual
        # A shorter name may also end earlier; those lines are searched too.
        suspects = np.flatnonzero(at_usual)
    todo = np.flatnonzero(ev_len < 0) if usual > 0 else np.arange(n)
    for k in range(0, geo.event_width, 7):
        if not len(todo):
            break
        found = lowest_byte(has_pair(as_words[todo, c + 2 + k], COLON, SPACE))
        hit = found < 7
        ev_len[todo[hit]] = k + found[hit]
        todo = todo[~hit]
    if usual > 0 and len(suspects):
        # A ": " before the usual end means another, shorter event name.
        for k in range(0, usual, 7):
            found = lowest_byte(has_pair(as_words[suspects, c + 2 + k], COLON, SPACE))
            earlier = (k + found < usual) & (found < 7)
            if earlier.any():
                ev_len[suspects[earlier]] = k + found[earlier]
                suspects = suspects[~earlier]
    ok &= ev_len > 0
    length = np.maximum(ev_len, 0)
    event_parts = []
    for k in range(0, geo.event_width, 8):
        keep = np.clip(length - k, 0, 8)
        event_parts.append(word(c + 2 + k) & _LOW_BYTES[keep])
    event_key = _mix(length.astype(np.uint64), *event_parts)
    event_hi = event_lo + length
    ok &= event_hi + 2 <= ends
    return _FixedFields(
        ok,
        t_ns,
        cpu.astype(np.int64),
        starts + b,
        event_lo,
        event_hi,
        _msg_start(buf, event_hi, ends),
        head_key,
        event_key,
    )


def split_block(data: bytes, first_line: int) -> LineBlock:
    """Split a block of whole lines into the fields every layout shares."""
    raw = np.frombuffer(data, dtype=np.uint8)
    buf = _padded(data)
    ends = np.flatnonzero(raw == NEWLINE).astype(np.int64)
    if not len(raw) or raw[-1] != NEWLINE:
        ends = np.append(ends, len(raw))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    n = len(starts)
    # A carriage return before the newline is not part of the line.
    ends = ends - ((ends > starts) & (buf[ends - 1 + PAD] == CR))
    line_no = first_line + np.arange(n, dtype=np.int64)

    # Learn the block's columns from a sample, split the lines that follow them at fixed
    # columns, and the rest (headers, other tasks' widths, odd lines) by searching.
    sample = min(n, SAMPLE_LINES)
    geo = _learn(_general(buf, starts[:sample], ends[:sample]), starts[:sample], buf)
    head_id = np.full(n, -1, dtype=np.int64)
    event_id = np.full(n, -1, dtype=np.int64)
    if geo is not None:
        fields = _fixed(buf, starts, ends, geo)
        ok = fields.ok
        t_ns, cpu, msg_start = fields.t_ns, fields.cpu, fields.msg_start
        head_end, event_lo, event_hi = fields.head_end, fields.event_lo, fields.event_hi
        head_key = np.where(ok, fields.head_key, 0)
        event_key = np.where(ok, fields.event_key, 0)
    else:
        ok = np.zeros(n, dtype=bool)
        t_ns, cpu, msg_start, head_end, event_lo, event_hi, head_key, event_key = (
            np.zeros(n, dtype=np.int64) for _ in range(8)
        )
        head_key = head_key.astype(np.uint64)
        event_key = event_key.astype(np.uint64)
    rest = np.flatnonzero(~ok)
    if len(rest):
        g = _general(buf, starts[rest], ends[rest])
        ok[rest] = g.ok
        t_ns[rest], cpu[rest] = g.t_ns, g.cpu
        head_end[rest], event_lo[rest], event_hi[rest] = g.head_end, g.event_lo, g.event_hi
        msg_start[rest] = g.msg_start
        # Lines of other geometries: exact hashes of their (variable) columns.
        head_key[rest] = _segment_keys(buf, starts[rest], g.head_end)
        event_key[rest] = _segment_keys(buf, g.event_lo, g.event_hi)

    sel = np.flatnonzero(ok)
    heads: list[str] = []
    events: list[str] = []
    if len(sel):
        for keys, lo, hi, ids, texts in (
            (head_key, starts, head_end, head_id, heads),
            (event_key, event_lo, event_hi, event_id, events),
        ):
            found, first = few_distinct(keys[sel])
            ids[sel] = found
            rows = sel[first]
            texts += [data[lo[i] : hi[i]].decode("utf-8", "replace").strip() for i in rows.tolist()]
    return LineBlock(
        data=data,
        buf=buf,
        starts=starts,
        ends=ends,
        line_no=line_no,
        ok=ok,
        t_ns=t_ns,
        cpu=cpu,
        head_id=head_id,
        heads=heads,
        event_id=event_id,
        events=events,
        msg_start=msg_start,
    )
