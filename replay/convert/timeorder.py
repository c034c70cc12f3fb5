"""What out-of-order time stamps in a log mean, and which lines a conversion leaves out for them.

A log's lines should come in time order, but not exactly: the kernel keeps one ring buffer per
CPU, and a reader that merges them (perf script's rounds, a capture of per-CPU buffers) may put
a line a little after one of a later time. Such small reorderings are legitimate: the lines
keep their time stamps, the rows are re-sorted, and the lines moved are counted
(``reordered (per-CPU interleave)``) and warned about. Anything else is not, and each case is
counted by name, warned about, and its lines left out rather than moved in time:

- a **garbled stamp**: a run of at most :data:`RUN_MAX` lines whose time jumps more than
  :data:`WINDOW_NS` away from the line before and jumps back to it after, the lines on both
  sides agreeing (``81234567.000000`` among stamps of 86 s). A run at the end of a block
  waits for the next block to be judged;
- **time going back** by more than :data:`WINDOW_NS` behind the latest line so far, for good:
  a log concatenated twice, two halves swapped, a CPU's section repeated. Those lines are left
  out; a log made of several captures is converted with each part as its own file (files are
  merged by time).

Stamps past 2**63 ns (292 years) cannot be a trace's ``t_ns`` at all and are counted apart
(:data:`OUT_OF_RANGE`, checked where the stamps are read).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

WINDOW_NS = 1_000_000_000
"""How far lines may interleave (1 s): far more than per-CPU buffers do in practice (ms), far
less than the gap a concatenated or garbled log shows."""
RUN_MAX = 8
"""Longest run of lines taken for a garbled stamp (a longer jump that comes back is a section
of the log, judged by the 'time going back' rule)."""
INT64_MIN = int(np.iinfo(np.int64).min)
INT64_MAX = int(np.iinfo(np.int64).max)

GARBLED = "garbled time stamp (far from the lines on both sides)"
BEHIND = (
    "time stamp over 1 s behind earlier lines (log concatenated twice, or a CPU's section "
    "repeated?)"
)
OUT_OF_RANGE = "time stamp past 2**63 ns (292 years)"
REORDERED = "reordered (per-CPU interleave)"
TIME_REASONS = (GARBLED, BEHIND, OUT_OF_RANGE)


@dataclass
class Verdict:
    """One block's lines judged by their time stamps."""

    bad: dict[str, np.ndarray] = field(default_factory=dict)
    """Line numbers to leave out, by reason (some may be of an earlier block: see
    :attr:`retracted`)."""
    retracted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Lines of an earlier block, dispatched while undecided, now found garbled: their rows
    (still waiting, being ahead in time) are to be dropped."""
    reordered: int = 0
    """Lines kept but placed before an earlier line of a later time."""


class TimeOrder:
    """Judges one file's lines, block after block, in line order (see the module's rules)."""

    def __init__(self) -> None:
        self.latest: int | None = None
        """Latest time of a line kept so far."""
        self.floor = INT64_MIN
        """Rows before this time are written: no later row may go before it."""
        self.prev: int | None = None
        """Time of the last line judged and kept (the context of the next block's first)."""
        self.carry_lines = np.zeros(0, dtype=np.int64)
        self.carry_t = np.zeros(0, dtype=np.int64)

    def cut(self) -> int | None:
        """Rows before this time can be written: no line still to come may precede them."""
        if self.latest is None:
            return None
        return max(self.latest, INT64_MIN + WINDOW_NS) - WINDOW_NS

    def judge(self, lines: np.ndarray, t: np.ndarray) -> Verdict:
        """Judge a block's event lines (numbers and times, in line order)."""
        first_new = int(lines[0]) if len(lines) else INT64_MAX
        lines = np.concatenate([self.carry_lines, lines])
        t = np.concatenate([self.carry_t, t])
        if not len(t):
            return Verdict()
        before = np.empty_like(t)
        # The file's first line has no line before it: it is compared with the one after.
        before[0] = t[min(1, len(t) - 1)] if self.prev is None else self.prev
        before[1:] = t[:-1]
        garbled, decided = _garbled(t, before)
        self.carry_lines, self.carry_t = lines[decided:], t[decided:]
        lines, t, garbled = lines[:decided], t[:decided], garbled[:decided]
        latest = INT64_MIN if self.latest is None else self.latest
        kept_t = np.where(garbled, INT64_MIN, t)
        latest_before = np.maximum.accumulate(np.concatenate([[latest], kept_t[:-1]]))
        floor = np.maximum(np.maximum(latest_before, INT64_MIN + WINDOW_NS) - WINDOW_NS, self.floor)
        behind = ~garbled & (t < floor)
        kept = ~garbled & ~behind
        verdict = Verdict(reordered=int((kept & (t < latest_before)).sum()))
        for reason, mask in ((GARBLED, garbled), (BEHIND, behind)):
            if mask.any():
                verdict.bad[reason] = lines[mask]
        old = lines[~kept]
        verdict.retracted = old[old < first_new]
        if kept.any():
            self.latest = max(latest, int(t[kept].max()))
            self.prev = int(t[kept][-1])
        return verdict


def _garbled(t: np.ndarray, before: np.ndarray) -> tuple[np.ndarray, int]:
    """Lines of garbled stamps, and how many lines are decided (the rest wait for more).

    A jump (over :data:`WINDOW_NS` from the line before) followed, within :data:`RUN_MAX`
    lines, by a jump back to the time before it marks the run in between. Jumps are rare in a
    real log, so they are looked at one by one.
    """
    n = len(t)
    garbled = np.zeros(n, dtype=bool)
    jumps = np.flatnonzero(np.abs(t - before) > WINDOW_NS)
    for i in jumps.tolist():
        if garbled[i] or (i > 0 and garbled[i - 1]):
            continue  # in a run already marked, or the line that ends one
        base = int(before[i])
        ahead = t[i + 1 : i + 1 + RUN_MAX]
        # The run ends with a jump back to the time before it (not a slow drift back).
        back = np.flatnonzero(
            (np.abs(ahead - base) <= WINDOW_NS)
            & (np.abs(ahead - t[i : i + len(ahead)]) > WINDOW_NS)
        )
        if len(back):
            garbled[i : i + 1 + int(back[0])] = True
        elif i + RUN_MAX >= n and t[i] > base:
            return garbled, i  # a jump ahead near the end: the next block decides
    return garbled, n
