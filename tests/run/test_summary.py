from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import replay.mmu.results as results
from replay.mmu.results import FAULT_COLUMNS, FaultSink
from replay.run.summary import _Peaks


def test_peaks_follow_trace_rows_across_chunks() -> None:
    """Group 0: +4 (row 1), +1 (row 5), -3 and +2 in row 7 (one event: net -1), +3 (row 9).
    Running 4, 5, 4, 7: peak 7. Group 1: -2 then +1: never above 0. Fed in two chunks."""
    p = _Peaks(2)
    p.feed(np.array([0, 0, 1]), np.array([1, 5, 2]), np.array([4, 1, -2]))
    p.feed(np.array([0, 0, 0, 1]), np.array([7, 7, 9, 8]), np.array([-3, 2, 3, 1]))
    assert p.peak.tolist() == [7, 0]
    assert p.level.tolist() == [7, -1]


def test_a_row_that_nets_to_less_does_not_peak_inside() -> None:
    """A page-limit fault zaps 21 then allocates 1 in the same row: no transient peak."""
    p = _Peaks(1)
    p.feed(np.zeros(3, np.int64), np.array([1, 2, 2]), np.array([30, -21, 1]))
    assert p.peak.tolist() == [30]


def _chunk(start: int, n: int) -> dict[str, np.ndarray]:
    rows = np.arange(start, start + n)
    return {
        k: (rows % 3).astype(dt) if k in ("cause", "refill", "attribution") else rows.astype(dt)
        for k, dt in FAULT_COLUMNS.items()
    }


def test_spilled_sink_reads_back_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "SPILL_ROWS", 100)
    sink = FaultSink(tmp_path / "f.parquet", {b"k": b"v"})
    for start, n in ((0, 30), (30, 150), (180, 7)):
        sink.add(_chunk(start, n))
    sink.close()
    memory = FaultSink()
    memory.add(_chunk(0, 187))
    got, want = sink.arrays(), memory.arrays()
    assert all(np.array_equal(got[k], want[k]) for k in FAULT_COLUMNS)
    assert [len(c["row"]) for c in sink.chunks()] == [100, 87]

    import pyarrow.parquet as pq

    md = pq.read_metadata(tmp_path / "f.parquet")
    assert md.metadata[b"k"] == b"v"
    assert md.num_row_groups == 2
