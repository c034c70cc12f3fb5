"""What out-of-order time stamps mean (replay/convert/timeorder.py, issue 12 item 6)."""

from __future__ import annotations

import numpy as np

from replay.convert.timeorder import BEHIND, GARBLED, RUN_MAX, WINDOW_NS, TimeOrder, Verdict

S = 1_000_000_000


def _judge(order: TimeOrder, first_line: int, seconds: list[float]) -> Verdict:
    t = np.array([round(x * S) for x in seconds], dtype=np.int64)
    lines = np.arange(first_line, first_line + len(t), dtype=np.int64)
    return order.judge(lines, t)


def _bad(verdict: Verdict) -> dict[str, list[int]]:
    return {k: v.tolist() for k, v in verdict.bad.items()}


def test_interleave_within_the_window_is_kept_and_counted() -> None:
    order = TimeOrder()
    v = _judge(order, 1, [86.5, 86.7, 86.6, 86.8, 86.65, 86.9])
    assert _bad(v) == {}
    assert v.reordered == 2  # 86.6 after 86.7, 86.65 after 86.8
    assert order.cut() == round(86.9 * S) - WINDOW_NS


def test_a_garbled_stamp_is_left_out() -> None:
    v = _judge(TimeOrder(), 1, [86.5, 86.6, 81234567.0, 86.7, 86.8])
    assert _bad(v) == {GARBLED: [3]}
    v = _judge(TimeOrder(), 1, [86.5, 86.6, 3.0, 86.7, 86.8])  # backwards, then back
    assert _bad(v) == {GARBLED: [3]}


def test_a_garbled_first_line_does_not_take_the_log_with_it() -> None:
    v = _judge(TimeOrder(), 1, [81234567.0, 86.6, 86.7, 86.8])
    assert _bad(v) == {GARBLED: [1]}


def test_a_garbled_run_longer_than_the_limit_is_a_section() -> None:
    """A jump ahead that lasts more than RUN_MAX lines is time moving on: the lines after it
    that go back are behind."""
    ahead = [500.0 + i / 10 for i in range(RUN_MAX + 1)]
    v = _judge(TimeOrder(), 1, [86.5, 86.6, *ahead, 86.7, 86.8])
    assert _bad(v) == {BEHIND: [RUN_MAX + 4, RUN_MAX + 5]}


def test_time_going_back_for_good_is_left_out() -> None:
    """A log concatenated twice: its second copy is behind, line after line."""
    order = TimeOrder()
    assert _bad(_judge(order, 1, [10.0, 11.0, 12.0, 13.0])) == {}
    v = _judge(order, 5, [10.0, 11.0, 12.0, 13.0, 14.0])
    # 10.0 and 11.0 are over 1 s behind 13.0; 12.0 is within the window (kept, re-sorted).
    assert _bad(v) == {BEHIND: [5, 6]}
    assert v.reordered == 1


def test_a_jump_at_a_block_end_waits_for_the_next_block() -> None:
    order = TimeOrder()
    v = _judge(order, 1, [86.5, 86.6, 86.7, 86.8, 86.9, 87.0, 87.1, 87.2, 87.3, 87.4, 9000.0])
    assert _bad(v) == {}
    assert order.cut() == round(87.4 * S) - WINDOW_NS  # the undecided line does not count
    v = _judge(order, 12, [87.5, 87.6, 87.7])
    assert _bad(v) == {GARBLED: [11]}
    assert v.retracted.tolist() == [11]


def test_a_real_gap_at_a_block_end_is_kept() -> None:
    order = TimeOrder()
    _judge(order, 1, [86.5, 86.6, 86.7, 86.8, 86.9, 87.0, 87.1, 87.2, 87.3, 87.4, 200.0])
    v = _judge(order, 12, [200.1 + i / 10 for i in range(RUN_MAX + 1)])
    assert _bad(v) == {}
    assert v.retracted.tolist() == []
    assert order.latest == round((200.1 + RUN_MAX / 10) * S)


def test_nothing_goes_before_written_rows() -> None:
    order = TimeOrder()
    _judge(order, 1, [10.0, 10.5])
    order.floor = round(10.4 * S)  # rows up to 10.4 s were written (the pending bound)
    v = _judge(order, 3, [10.3, 10.6])
    assert _bad(v) == {BEHIND: [3]}
