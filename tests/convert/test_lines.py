"""The numpy line splitter agrees with a plain regular-expression reading of real logs."""

from __future__ import annotations

import numpy as np
import pytest

from replay.convert.buffer import padded, parse_digits
from replay.convert.distinct import few_distinct
from replay.convert.layout import LINE, slow_line
from replay.convert.lines import split_block
from tests.convert.helpers import LOGS

REAL_LOGS = sorted(p.name for p in LOGS.glob("*.txt"))


@pytest.mark.parametrize("name", REAL_LOGS)
def test_split_matches_a_regex_reading(name: str) -> None:
    data = (LOGS / name).read_bytes()
    blk = split_block(data, 1)
    lines = data.decode().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    assert len(blk) == len(lines)
    split = 0
    for i, text in enumerate(lines):
        m = LINE.match(text)
        if not blk.ok[i]:
            # The fast path leaves only lines that hold no event (headers, blank lines,
            # lost-event notices), for the slow path to count: never an event line.
            assert m is None, text
            assert slow_line(text) in ("header", "blank", "lost"), text
            continue
        split += 1
        assert m is not None, text
        sec, _, frac = m.group("ts").partition(".")
        assert blk.t_ns[i] == int(sec) * 1_000_000_000 + int(frac.ljust(9, "0"))
        assert blk.cpu[i] == int(m.group("cpu"))
        assert blk.heads[blk.head_id[i]] == m.group("head").strip()
        assert blk.events[blk.event_id[i]] == m.group("event")
        assert blk.payload(i) == (m.group("msg") or "").rstrip()
    # Every line the regex reads as an event was split, and checked above.
    assert split == sum(LINE.match(text) is not None for text in lines) > 0


def test_fixed_and_searched_lines_agree_within_a_block() -> None:
    """A line shifted by a column falls to the searching path and reads the same."""
    lines = (LOGS / "capture-ftrace-tgid-dropcaches.txt").read_text().splitlines()
    events = [x for x in lines if not x.startswith("#")]
    shifted = " " + events[0]
    blk = split_block(("\n".join([*events, shifted]) + "\n").encode(), 1)
    assert blk.ok.all()
    assert blk.t_ns[-1] == blk.t_ns[0]
    assert blk.payload(len(blk) - 1) == blk.payload(0)
    assert blk.events[blk.event_id[-1]] == blk.events[blk.event_id[0]]


def test_nanosecond_stamps() -> None:
    """trace-cmd report -t prints 9 decimals: both paths read them to the nanosecond."""
    lines = [x for x in (LOGS / "trace-cmd-kvm-head.txt").read_text().splitlines()[1:] if x]
    stamped = [x.replace(": ", "123: ", 1) for x in lines]
    blk = split_block(("\n".join([*stamped, " " + stamped[0]]) + "\n").encode(), 1)
    plain = split_block(("\n".join(lines) + "\n").encode(), 1)
    assert blk.ok.all()
    assert (blk.t_ns[:-1] == plain.t_ns + 123).all()
    assert blk.t_ns[-1] == blk.t_ns[0]


def test_parse_digits() -> None:
    data = b" 0x000000010a3f5008 181 12 ab 99999999999 ffffffffffffffff zz\n"
    buf = padded(data)

    def parse(text: bytes, width: int, base: int) -> tuple[int, bool]:
        lo = data.index(text)
        value, ok = parse_digits(buf, np.array([lo]), np.array([lo + len(text)]), width, base)
        return int(value[0]), bool(ok[0])

    assert parse(b"000000010a3f5008", 16, 16) == (0x10A3F5008, True)
    assert parse(b"181", 8, 16) == (0x181, True)
    assert parse(b"12", 5, 10) == (12, True)
    assert parse(b"ab", 8, 16) == (0xAB, True)
    assert parse(b"99999999999", 12, 10) == (99_999_999_999, True)
    assert parse(b"ffffffffffffffff", 16, 16) == (2**64 - 1, True)
    assert parse(b"zz", 4, 16)[1] is False
    assert parse(b"ab", 4, 10)[1] is False


def test_few_distinct_numbers_values_in_order_of_first_appearance() -> None:
    keys = np.array([7, 3, 7, 9, 3, 3, 9, 7], dtype=np.uint64)
    ids, first = few_distinct(keys)
    assert ids.tolist() == [0, 1, 0, 2, 1, 1, 2, 0]
    assert first.tolist() == [0, 1, 3]
    # Two values in one hash bucket: the sort decides, same answer.
    clash = np.array([5, 5 + 8191, 5, 5 + 8191], dtype=np.uint64)
    ids, first = few_distinct(clash)
    assert ids.tolist() == [0, 1, 0, 1]
    assert first.tolist() == [0, 1]
