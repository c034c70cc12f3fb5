"""A text log's DAMON lines: grouped into aggregations per kdamond, in line order.

Per block the converter hands over the ``damon_aggregated`` lines (read with numpy where they
follow the print fmt, by :func:`.damon.parse_aggregated` otherwise) and the
``damon_monitor_intervals_tune`` lines; :meth:`DamonLines.flush` takes them in line order per
kdamond. The kernel prints one aggregation as ``nr_regions`` lines of a target, target after
target, in address order, the tune line (if any) just before them: a run of lines of one target
and one ``nr_regions`` is cut every ``nr_regions`` lines, and a run that changes before it is
complete closes an aggregation cut short (counted). State carries over blocks.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from replay.convert.damon import (
    CUT_SHORT,
    MISSING_INTERVALS,
    NO_AGE,
    TUNE,
    Intervals,
    Observed,
    emit_regions,
    parse_aggregated,
    parse_tune,
)
from replay.convert.source import LogFormatError

if TYPE_CHECKING:
    from collections.abc import Callable

    from replay.convert.damon import DamonPlacer
    from replay.convert.report import ConvertReport
    from replay.convert.rows import Rows

OVERLAP = "DAMON region overlaps an earlier region of its aggregation"
_COLUMNS = ("line", "t", "mon", "target", "nr", "start", "end", "nacc", "age")


@dataclass
class _Monitor:
    """One kdamond's state across blocks."""

    name: str
    intervals: Intervals | None
    raw_ids: dict[int, int] = field(default_factory=dict)
    """Kernel pointers (5.15/5.16 target_id) to target indices, in order of first sight."""
    open: tuple[int, int, int, int] | None = None
    """The aggregation in progress: (target, nr_regions, lines so far, largest end so far)."""


class DamonLines:
    """One log's DAMON lines into region rows (see the module's docstring)."""

    def __init__(
        self,
        name: str,
        placer: DamonPlacer,
        report: ConvertReport,
        bad: Callable[[int, str, str], None],
    ) -> None:
        self.name = name
        self.placer = placer
        self.report = report
        self.bad = bad
        self.monitors: list[_Monitor] = []
        self._ids: dict[str, int] = {}
        self.parts: list[dict[str, np.ndarray]] = []
        self.tunes: list[tuple[int, int, int]] = []

    def monitor(self, name: str) -> int:
        """The number of a kdamond (by its task), made on first sight."""
        idx = self._ids.get(name)
        if idx is None:
            idx = self._ids[name] = len(self.monitors)
            self.monitors.append(_Monitor(name, self.placer.initial_intervals()))
        return idx

    def add_columns(
        self, line: np.ndarray, t: np.ndarray, mon: np.ndarray, values: list[np.ndarray]
    ) -> None:
        """``damon_aggregated`` lines read with numpy (:func:`.damon.aggregated_fields`).

        The kernel prints ``nr_regions``, ``nr_accesses`` and ``age`` from 32-bit fields: a
        larger value is damage, counted (a trace's columns are 32 bits wide).
        """
        if not len(line):
            return
        cols = {k: np.asarray(v) for k, v in zip(_COLUMNS, (line, t, mon, *values), strict=True)}
        u32 = np.uint64(0xFFFFFFFF)
        good = (cols["nr"] > 0) & (cols["nr"] <= u32) & (cols["nacc"] <= u32)
        good &= cols["age"] <= 0xFFFFFFFF
        if not good.all():
            for k in np.flatnonzero(~good).tolist():
                self.bad(int(line[k]), "", "damon_aggregated field past 32 bits (or no region)")
            cols = {k: v[good] for k, v in cols.items()}
        self.parts.append(cols)

    def add_line(self, line: int, t: int, mon: int, event: str, payload: str) -> None:
        """A DAMON line read line by line."""
        if event == TUNE:
            sample = parse_tune(payload)
            if sample is None or sample <= 0:
                self.bad(line, payload, f"unreadable {event} payload")
            else:
                self.tunes.append((line, mon, sample))
            return
        got = parse_aggregated(payload)
        if got is None or max(got) >= 1 << 64:
            self.bad(line, payload, "unreadable damon_aggregated payload")
            return
        values = [np.array([v], dtype=np.uint64 if i < 5 else np.int64) for i, v in enumerate(got)]
        self.add_columns(np.array([line]), np.array([t]), np.array([mon]), values)

    def flush(self, rows: Rows) -> None:
        """Turn the block's DAMON lines into rows, in line order per kdamond."""
        if not self.parts and not self.tunes:
            return
        if self.parts:
            cols = {k: np.concatenate([p[k] for p in self.parts]) for k in _COLUMNS}
            order = np.argsort(cols["line"], kind="stable")
            cols = {k: v[order] for k, v in cols.items()}
        else:
            cols = {k: np.zeros(0, dtype=np.int64) for k in _COLUMNS}
        tunes = sorted(self.tunes)
        self.parts, self.tunes = [], []
        for m in range(len(self.monitors)):
            mine = np.flatnonzero(cols["mon"] == m)
            mcols = {k: v[mine] for k, v in cols.items()}
            at = 0
            for line, mon, sample in tunes:
                if mon != m:
                    continue
                cut = int(np.searchsorted(mcols["line"], line))
                self._segment(rows, self.monitors[m], {k: v[at:cut] for k, v in mcols.items()})
                self._tune(self.monitors[m], sample)
                at = cut
            self._segment(rows, self.monitors[m], {k: v[at:] for k, v in mcols.items()})

    def _tune(self, mon: _Monitor, sample: int) -> None:
        """A ``damon_monitor_intervals_tune`` line: aggregation = sample x aggr_samples."""
        self.placer.note("intervals_tune_lines")
        if mon.intervals is None:
            return  # the aggregation interval is unknown: the next aggregation stops
        ratio = mon.intervals.max_accesses
        mon.intervals = Intervals(sample, sample * ratio, mon.intervals.source + "+tune")

    def _segment(self, rows: Rows, mon: _Monitor, cols: dict[str, np.ndarray]) -> None:
        """Lines of one kdamond with the same intervals: runs, aggregations, overlap, rows."""
        n = len(cols["line"])
        if not n:
            return
        if mon.intervals is None:
            raise LogFormatError(f"{self.name}:{int(cols['line'][0])}: {MISSING_INTERVALS}")
        target = self._targets(mon, cols["target"], cols["age"])
        nr = cols["nr"].astype(np.int64)
        change = np.ones(n, dtype=bool)
        change[1:] = (target[1:] != target[:-1]) | (nr[1:] != nr[:-1])
        starts = np.flatnonzero(change).tolist()
        for a, b in zip(starts, [*starts[1:], n], strict=True):
            keep = self._run(mon, int(target[a]), int(nr[a]), cols, a, b)
            obs = Observed(
                cols["t"][a:b][keep],
                cols["line"][a:b][keep],
                cols["start"][a:b][keep].astype(np.uint64),
                cols["end"][a:b][keep].astype(np.uint64),
                cols["nacc"][a:b][keep].astype(np.uint64),
                cols["age"][a:b][keep].astype(np.int64),
            )
            if len(obs.t):
                where = f"{self.name}:{int(obs.line[0])}"
                place = self.placer.target(mon.name, int(target[a]), where, int(obs.t[0]))
                emit_regions(
                    rows, self.placer, self.report, place, obs, mon.intervals, self.bad, self.name
                )
        self.placer.intervals_seen[mon.name] = {
            "sample_us": mon.intervals.sample_us,
            "aggr_us": mon.intervals.aggr_us,
            "source": mon.intervals.source.split("+")[0],
            "tuned": mon.intervals.source.endswith("+tune"),
        }

    def _targets(self, mon: _Monitor, raw: np.ndarray, age: np.ndarray) -> np.ndarray:
        """Target indices: the field itself, or (no age: 5.15/5.16) pointers numbered."""
        target = raw.astype(np.int64, copy=True)
        old = np.flatnonzero(age == NO_AGE)
        if len(old):
            for k in old.tolist():
                target[k] = mon.raw_ids.setdefault(int(raw[k]), len(mon.raw_ids))
        return target

    def _run(
        self, mon: _Monitor, target: int, nr: int, cols: dict[str, np.ndarray], a: int, b: int
    ) -> np.ndarray:
        """Cut a run of one target and nr_regions into aggregations; which lines to keep."""
        length = b - a
        done = 0
        if mon.open is not None and mon.open[:2] == (target, nr):
            done, carry_end = mon.open[2], mon.open[3]
        else:
            if mon.open is not None:
                self.placer.note(CUT_SHORT)
            carry_end = 0
        pos = done + np.arange(length)
        first = pos % nr == 0
        self.placer.note("aggregations", int(first.sum()))
        start = cols["start"][a:b].astype(np.uint64)
        end = cols["end"][a:b].astype(np.uint64)
        keep = np.ones(length, dtype=bool)
        cuts = [0, *np.flatnonzero(first).tolist(), length]
        last_max = carry_end
        for i, j in itertools.pairwise(cuts):
            if i == j:
                continue
            before = np.maximum.accumulate(end[i:j])
            prior = np.empty(j - i, dtype=np.uint64)
            prior[0] = carry_end if i == 0 else 0
            prior[1:] = np.maximum(before[:-1], prior[0])
            bad = start[i:j] < prior
            if bad.any():
                keep[i:j] &= ~bad
                lines = cols["line"][a + i : a + j][bad].tolist()
                for line, lo, hi in zip(lines, start[i:j][bad], end[i:j][bad], strict=True):
                    self.bad(int(line), f"{int(lo)}-{int(hi)}", OVERLAP)
            last_max = int(max(int(before[-1]), int(prior[0])))
        left = (done + length) % nr
        mon.open = None if left == 0 else (target, nr, left, last_max)
        return keep

    def finish(self) -> None:
        """At the end of the log: an aggregation still open was cut short."""
        for mon in self.monitors:
            if mon.open is not None:
                self.placer.note(CUT_SHORT)
                mon.open = None
