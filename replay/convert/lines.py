"""Cut a block of log text into lines and their common fields, for all lines at once.

Every layout (ftrace, perf script, trace-cmd report) puts the same things in the same order:
``HEAD [CPU] [FLAGS] SECONDS.FRACTION: EVENT: PAYLOAD``, where HEAD names the task (``comm-pid``,
``comm tid``, ``comm pid/tid``, optionally ``(tgid)``). A regular expression per line costs
Python work on every line; numpy over the block's bytes costs a few operations per byte:

- the tools pad their columns to fixed widths, so most lines of a block put the ": " after the
  time stamp, its decimal point and the ``[CPU]`` brackets at the same columns. The columns are
  learnt from a sample of the block, and every line that has those bytes where expected is read
  at fixed columns from one window of its first bytes (:func:`_fixed`, with the word arithmetic
  of :mod:`.swar`);
- the other lines (headers, tasks whose pid is wider, old layouts) are searched: the first
  ": " of a line ends the time stamp, the second the event name, the last space before the
  time stamp starts it, the last ``[`` before it opens the CPU (:func:`_general`);
- digits are decoded by table lookup (:func:`.buffer.parse_digits`); hexadecimal numbers are
  packed straight into words;
- task and event columns repeat (a few threads, a few events), so they are hashed exactly and
  counted in hash buckets (:mod:`.distinct`); each distinct text is decoded once.

Lines neither path can split (comments, blank lines, ``cpus=N``, lost-event notices, damage)
go to the slow path with their line numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.convert.buffer import (
    CLOSE,
    COLON,
    CR,
    DIGIT_VALUE,
    DOT,
    NEWLINE,
    OPEN,
    PAD,
    SPACE,
    first_pair,
    last_in_window,
    padded,
    parse_digits,
    window,
)
from replay.convert.distinct import few_distinct, mix, segment_keys
from replay.convert.swar import LOW_BYTES, digits_word, has_pair, lowest_byte, swar_decimal_words

MAX_INT_DIGITS = 12
MAX_FRACTION_DIGITS = 9
MSG_PAD = 24
"""Spaces looked past at the start of a payload (trace-cmd pads event names to 20 columns)."""


@dataclass
class LineBlock:
    """The lines of one block of text, split into fields where the fast path could."""

    data: bytes
    buf: np.ndarray
    """The bytes, padded with :data:`.buffer.PAD` zeros on each side."""
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


@dataclass(frozen=True)
class _KeyedFields(_Fields):
    """Fields with an exact hash of each line's task and event columns."""

    head_key: np.ndarray
    event_key: np.ndarray


def _timestamp(buf: np.ndarray, p1: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, ...]:
    """Time stamps ending at ``p1``: ns, validity, and where each starts."""
    before = window(buf, p1 - TS_WINDOW, TS_WINDOW)
    space = last_in_window(before, SPACE)
    ts_start = p1 - TS_WINDOW + space + 1
    dot_col = last_in_window(before, DOT)
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
    padded_at = np.flatnonzero(buf[out + PAD] == SPACE)
    if len(padded_at):
        at = out[padded_at]
        first_char = np.argmax(window(buf, at, MSG_PAD) != SPACE, axis=1)
        out[padded_at] = np.minimum(at + first_char, ends[padded_at])
    return out


def _general(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> _Fields:
    """Split any line: search for the first two ": " and read back from the first."""
    head = window(buf, starts, HEAD_WINDOW)
    limit = np.minimum(ends - starts, HEAD_WINDOW)
    head = np.where(np.arange(HEAD_WINDOW)[None, :] < limit[:, None], head, 0)
    c1 = first_pair(head, COLON, SPACE)
    p1 = starts + c1
    t_ns, ok, ts_start = _timestamp(buf, p1, starts)
    ok &= c1 >= 0
    # A trace-cmd instance prefix ("name: ") comes before the time stamp: try the next ": ".
    retry = ~ok & (c1 >= 0)
    if retry.any():
        c1b = first_pair(head, COLON, SPACE, skip=c1 + 2)
        p1b = starts + c1b
        t_b, ok_b, ts_b = _timestamp(buf, p1b, starts)
        ok_b &= c1b >= 0
        c1 = np.where(retry, c1b, c1)
        p1 = np.where(retry, p1b, p1)
        t_ns = np.where(retry, t_b, t_ns)
        ts_start = np.where(retry, ts_b, ts_start)
        ok = np.where(retry, ok_b, ok)
    c2 = first_pair(head, COLON, SPACE, skip=c1 + 2)
    ok &= (c2 > c1) & (c1 >= 0)
    p2 = starts + c2
    # [CPU] is the last "[...]" before the time stamp.
    before_ts = window(buf, ts_start - BRACKET_WINDOW, BRACKET_WINDOW)
    open_col = last_in_window(before_ts, OPEN)
    close_col = last_in_window(before_ts, CLOSE)
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


def _fixed(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, geo: _Geometry) -> _KeyedFields:
    """Split lines that follow the block's geometry: every field at a known column.

    Everything is read as 8-byte words at known offsets: the separators compared as words,
    the digits decoded by SWAR arithmetic, the task column hashed from the words covering it,
    the end of the event column found by a word-wise search for ": ".
    """
    c, b = geo.colon, geo.bracket
    n = len(starts)
    # One window of each line's first bytes, seen as words at every byte offset: column k of
    # line_words is bytes [k, k+8) of every line, a strided view, no gather.
    width = -(-(c + 2 + geo.event_width + 8) // 8) * 8
    line_bytes = np.ascontiguousarray(window(buf, starts, width))
    line_words = np.ndarray(
        shape=(n, width - 7), dtype="<u8", buffer=line_bytes, offset=0, strides=(width, 1)
    )
    ok = (ends - starts > c + 2) & ((line_words[:, c] & np.uint64(0xFFFF)) == np.uint64(0x203A))
    t_ns, ok_t = _fixed_time(line_words, line_bytes, geo)
    cpu, ok_c = _fixed_cpu(line_words, line_bytes, geo)
    ok &= ok_t & ok_c
    # The task column [0, b): the words covering it, the last one overlapping.
    parts = [line_words[:, k] for k in range(0, max(b - 8, 0), 8)]
    parts.append(line_words[:, max(b - 8, 0)] & LOW_BYTES[min(b, 8)])
    head_key = mix(np.full(n, b, dtype=np.uint64), *parts)
    ev_len = _fixed_event_length(line_words, geo)
    ok &= ev_len > 0
    length = np.maximum(ev_len, 0)
    event_parts = []
    for k in range(0, geo.event_width, 8):
        keep = np.clip(length - k, 0, 8)
        event_parts.append(line_words[:, c + 2 + k] & LOW_BYTES[keep])
    event_key = mix(length.astype(np.uint64), *event_parts)
    event_lo = starts + c + 2
    event_hi = event_lo + length
    ok &= event_hi + 2 <= ends
    msg_start = _msg_start(buf, event_hi, ends)
    return _KeyedFields(
        ok, t_ns, cpu, starts + b, event_lo, event_hi, msg_start, head_key, event_key
    )


def _fixed_time(
    line_words: np.ndarray, line_bytes: np.ndarray, geo: _Geometry
) -> tuple[np.ndarray, np.ndarray]:
    """Time stamps in ns at the geometry's columns, and their validity."""
    c, d = geo.colon, geo.dot
    # Seconds: the 5 columns before the point (spaces before the digits, a space before them).
    sec = line_words[:, d - 8]
    ok = ((sec >> np.uint64(16)) & np.uint64(0xFF)) == np.uint64(SPACE)
    ok &= ((sec >> np.uint64(56)) & np.uint64(0xFF)) != np.uint64(SPACE)
    seconds, ok_s = swar_decimal_words(digits_word(sec, SECONDS_COLUMNS))
    # The point and the decimals (6, or 9 for trace-cmd report -t).
    ok &= (line_words[:, d] & np.uint64(0xFF)) == np.uint64(DOT)
    if c - d - 1 == 6:
        frac, ok_f = swar_decimal_words(digits_word(line_words[:, d - 1], 6))
        frac_ns = frac * np.uint64(1000)
    else:
        frac, ok_f = swar_decimal_words(line_words[:, d + 1])
        last = DIGIT_VALUE[line_bytes[:, c - 1]]
        frac_ns = frac * np.uint64(10) + last
        ok_f &= last < 10
    t_ns = (seconds * np.uint64(1_000_000_000) + frac_ns).astype(np.int64)
    return t_ns, ok & ok_s & ok_f


def _fixed_cpu(
    line_words: np.ndarray, line_bytes: np.ndarray, geo: _Geometry
) -> tuple[np.ndarray, np.ndarray]:
    """The ``[CPU]`` numbers at the geometry's columns, and their validity."""
    b, e = geo.bracket, geo.close
    cpu_word = line_words[:, e - 7]  # its last byte is the "]"
    ok = (cpu_word >> np.uint64(56)) == np.uint64(CLOSE)
    ok &= line_bytes[:, b] == OPEN
    cpu, ok_c = swar_decimal_words(digits_word(cpu_word << np.uint64(8), e - b - 1))
    return cpu.astype(np.int64), ok & ok_c


def _fixed_event_length(line_words: np.ndarray, geo: _Geometry) -> np.ndarray:
    """Length of each line's event column (-1 where no ": " ends it).

    The column ends at the next ": ": at the sample's most common length on most lines;
    searched in overlapping words 7 bytes apart on the others.
    """
    c, usual = geo.colon, geo.event_len
    n = len(line_words)
    ev_len = np.full(n, -1, dtype=np.int64)
    if usual > 0:
        at_usual = (line_words[:, c + 2 + usual] & np.uint64(0xFFFF)) == np.uint64(0x203A)
        ev_len[at_usual] = usual
        # A shorter name may also end earlier; those lines are searched too.
        suspects = np.flatnonzero(at_usual)
    todo = np.flatnonzero(ev_len < 0) if usual > 0 else np.arange(n)
    for k in range(0, geo.event_width, 7):
        if not len(todo):
            break
        found = lowest_byte(has_pair(line_words[todo, c + 2 + k], COLON, SPACE))
        hit = found < 7
        ev_len[todo[hit]] = k + found[hit]
        todo = todo[~hit]
    if usual > 0 and len(suspects):
        # A ": " before the usual end means another, shorter event name.
        for k in range(0, usual, 7):
            found = lowest_byte(has_pair(line_words[suspects, c + 2 + k], COLON, SPACE))
            earlier = (k + found < usual) & (found < 7)
            if earlier.any():
                ev_len[suspects[earlier]] = k + found[earlier]
                suspects = suspects[~earlier]
    return ev_len


def _line_bounds(raw: np.ndarray, buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and (exclusive) end of every line of a block."""
    ends = np.flatnonzero(raw == NEWLINE).astype(np.int64)
    if not len(raw) or raw[-1] != NEWLINE:
        ends = np.append(ends, len(raw))
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    # A carriage return before the newline is not part of the line.
    ends = ends - ((ends > starts) & (buf[ends - 1 + PAD] == CR))
    return starts, ends


def _split_fields(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> _KeyedFields:
    """Every line's fields: at the block's fixed columns where they fit, else searched.

    The columns are learnt from a sample; the lines that do not follow them (headers, other
    tasks' widths, odd lines) are searched, and their columns hashed from their own bytes.
    """
    n = len(starts)
    sample = min(n, SAMPLE_LINES)
    geo = _learn(_general(buf, starts[:sample], ends[:sample]), starts[:sample], buf)
    if geo is not None:
        fixed = _fixed(buf, starts, ends, geo)
        ok = fixed.ok
        fields = _KeyedFields(
            ok,
            fixed.t_ns,
            fixed.cpu,
            fixed.head_end,
            fixed.event_lo,
            fixed.event_hi,
            fixed.msg_start,
            np.where(ok, fixed.head_key, 0),
            np.where(ok, fixed.event_key, 0),
        )
    else:
        zeros = [np.zeros(n, dtype=np.int64) for _ in range(6)]
        keys = [np.zeros(n, dtype=np.uint64) for _ in range(2)]
        fields = _KeyedFields(np.zeros(n, dtype=bool), *zeros, *keys)
    rest = np.flatnonzero(~fields.ok)
    if len(rest):
        g = _general(buf, starts[rest], ends[rest])
        fields.ok[rest] = g.ok
        fields.t_ns[rest], fields.cpu[rest] = g.t_ns, g.cpu
        fields.head_end[rest] = g.head_end
        fields.event_lo[rest], fields.event_hi[rest] = g.event_lo, g.event_hi
        fields.msg_start[rest] = g.msg_start
        # Lines of other geometries: exact hashes of their (variable) columns.
        fields.head_key[rest] = segment_keys(buf, starts[rest], g.head_end)
        fields.event_key[rest] = segment_keys(buf, g.event_lo, g.event_hi)
    return fields


def _distinct_texts(
    data: bytes, sel: np.ndarray, keys: np.ndarray, bounds: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray, list[str]]:
    """Ids of a column on lines ``sel`` (-1 elsewhere), and each distinct text once."""
    ids = np.full(len(keys), -1, dtype=np.int64)
    if not len(sel):
        return ids, []
    found, first = few_distinct(keys[sel])
    ids[sel] = found
    lo, hi = bounds
    texts = [data[lo[i] : hi[i]].decode("utf-8", "replace").strip() for i in sel[first].tolist()]
    return ids, texts


def split_block(data: bytes, first_line: int) -> LineBlock:
    """Split a block of whole lines into the fields every layout shares."""
    raw = np.frombuffer(data, dtype=np.uint8)
    buf = padded(data)
    starts, ends = _line_bounds(raw, buf)
    fields = _split_fields(buf, starts, ends)
    sel = np.flatnonzero(fields.ok)
    head_id, heads = _distinct_texts(data, sel, fields.head_key, (starts, fields.head_end))
    event_id, events = _distinct_texts(
        data, sel, fields.event_key, (fields.event_lo, fields.event_hi)
    )
    return LineBlock(
        data=data,
        buf=buf,
        starts=starts,
        ends=ends,
        line_no=first_line + np.arange(len(starts), dtype=np.int64),
        ok=fields.ok,
        t_ns=fields.t_ns,
        cpu=fields.cpu,
        head_id=head_id,
        heads=heads,
        event_id=event_id,
        events=events,
        msg_start=fields.msg_start,
    )
