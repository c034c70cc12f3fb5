"""Cut a block of log text into lines and their common fields, for all lines at once.

Every layout (ftrace, perf script, trace-cmd report) puts the same things in the same order:
``HEAD [CPU] [FLAGS] SECONDS.FRACTION: EVENT: PAYLOAD``, where HEAD names the task (``comm-pid``,
``comm tid``, ``comm pid/tid``, optionally ``(tgid)``). Instead of a regular expression per line
(about 0.25 M lines/s here), the fields are found with numpy over the block's bytes: the first
``": "`` of a line ends the time stamp, the second ends the event name, the last space before
the time stamp starts it, the last ``[`` before it opens the CPU. Lines where any of this fails
(comments, blank lines, ``cpus=N``, lost-event notices, damaged lines) are handed to the slow path
with their line numbers. HEAD and EVENT repeat (a few threads, a few events), so they are hashed
per line and decoded once per distinct value.
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


PAD = 64
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
    out: np.ndarray = view[np.clip(at + PAD, 0, len(padded) - width)]
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
        width = 16
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
        value: np.ndarray = np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)
    else:
        weights = 10.0 ** np.arange(width - 1, -1, -1)
        value = (digits @ weights).astype(np.uint64)
    return value, valid


SEGMENT_WIDTH = 64
"""Bytes of a task or event column that take part in its hash (longer ones: the first 64 and
the length; a collision there is checked when the text is decoded)."""


def _segment_keys(buf: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A hash of each ``buf[lo:hi]``, the same wherever the segment sits in the block."""
    length = hi - lo
    window = _window(buf, lo, SEGMENT_WIDTH)
    window = np.where(np.arange(SEGMENT_WIDTH)[None, :] < length[:, None], window, 0)
    words = np.ascontiguousarray(window.astype(np.uint8)).view(np.uint64)
    mix = np.uint64(0x9E3779B97F4A7C15)
    key = length.astype(np.uint64)
    with np.errstate(over="ignore"):
        for j in range(words.shape[1]):
            key = (key ^ words[:, j]) * mix
            key ^= key >> np.uint64(29)
    out: np.ndarray = key
    return out


def _distinct(
    data: bytes, keys: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, list[str]]:
    """Ids of distinct segments, and each one's text (stripped)."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    texts = [data[lo[i] : hi[i]].decode("utf-8", "replace").strip() for i in first.tolist()]
    return inverse.astype(np.int64), texts


TS_WINDOW = 24
"""Bytes before a time stamp's ": " searched for its start (seconds and up to 9 decimals)."""
BRACKET_WINDOW = 24
"""Bytes before a time stamp searched for ``[CPU]`` (flags and padding lie between)."""


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
    colon_space = np.flatnonzero((raw[:-1] == COLON) & (raw[1:] == SPACE)).astype(np.int64)
    padded_cs = np.append(colon_space, np.iinfo(np.int64).max)

    def timestamp(p1: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Time stamps ending at ``p1``: ns, validity, and where each starts."""
        before = _window(buf, p1 - TS_WINDOW, TS_WINDOW)
        space = _last_in_window(before, SPACE)
        ts_start = p1 - TS_WINDOW + space + 1
        dot_col = _last_in_window(before, DOT)
        dot = p1 - TS_WINDOW + dot_col
        ok = (space >= 0) & (dot_col > space) & (ts_start > starts) & (p1 < ends)
        seconds, ok_s = parse_digits(buf, ts_start, np.where(ok, dot, ts_start), MAX_INT_DIGITS)
        frac, ok_f = parse_digits(buf, dot + 1, np.where(ok, p1, dot + 1), MAX_FRACTION_DIGITS)
        digits = p1 - dot - 1
        scale = 10 ** np.clip(MAX_FRACTION_DIGITS - digits, 0, MAX_FRACTION_DIGITS)
        t = seconds.astype(np.int64) * 1_000_000_000 + frac.astype(np.int64) * scale
        return t, ok & ok_s & ok_f, ts_start

    # The first ": " ends the time stamp; a trace-cmd instance prefix ("name: ") may come first.
    i_cs = np.searchsorted(colon_space, starts)
    p1 = padded_cs[np.minimum(i_cs, len(colon_space))]
    t_ns, ok, ts_start = timestamp(p1)
    retry = ~ok & (p1 < ends)
    if retry.any():
        i_cs = np.where(retry, i_cs + 1, i_cs)
        p1b = padded_cs[np.minimum(i_cs, len(colon_space))]
        t_b, ok_b, ts_b = timestamp(p1b)
        p1 = np.where(retry, p1b, p1)
        t_ns = np.where(retry, t_b, t_ns)
        ts_start = np.where(retry, ts_b, ts_start)
        ok = np.where(retry, ok_b, ok)
    p2 = padded_cs[np.minimum(i_cs + 1, len(colon_space))]
    ok &= p2 < ends
    # [CPU] is the last "[...]" before the time stamp.
    before_ts = _window(buf, ts_start - BRACKET_WINDOW, BRACKET_WINDOW)
    open_col = _last_in_window(before_ts, OPEN)
    close_col = _last_in_window(before_ts, CLOSE)
    bracket = ts_start - BRACKET_WINDOW + open_col
    close = ts_start - BRACKET_WINDOW + close_col
    ok &= (open_col >= 0) & (close_col > open_col) & (bracket >= starts)
    cpu, ok_cpu = parse_digits(buf, bracket + 1, close, 5)
    ok &= ok_cpu

    # Payload start: after the second ": " and any padding.
    first_char = np.argmax(_window(buf, p2 + 2, MSG_PAD) != SPACE, axis=1)
    msg_start = np.minimum(p2 + 2 + first_char, ends)

    sel = np.flatnonzero(ok)
    head_id = np.full(n, -1, dtype=np.int64)
    event_id = np.full(n, -1, dtype=np.int64)
    heads: list[str] = []
    events: list[str] = []
    if len(sel):
        h_lo, h_hi = starts[sel], bracket[sel]
        ids, heads = _distinct(data, _segment_keys(buf, h_lo, h_hi), h_lo, h_hi)
        head_id[sel] = ids
        e_lo, e_hi = p1[sel] + 2, p2[sel]
        ids, events = _distinct(data, _segment_keys(buf, e_lo, e_hi), e_lo, e_hi)
        event_id[sel] = ids
    return LineBlock(
        data=data,
        buf=buf,
        starts=starts,
        ends=ends,
        line_no=line_no,
        ok=ok,
        t_ns=t_ns,
        cpu=cpu.astype(np.int64),
        head_id=head_id,
        heads=heads,
        event_id=event_id,
        events=events,
        msg_start=msg_start,
    )
