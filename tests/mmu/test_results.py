"""The seam between an engine and where its fault rows go (``replay.mmu.results``)."""

from __future__ import annotations

import numpy as np
import pytest

from replay.mmu.config import CostModel, MmuConfig
from replay.mmu.engine import VectorEngine
from replay.mmu.reference import ReferenceEngine
from replay.mmu.results import (
    FAULT_COLUMNS,
    EngineResult,
    FaultChunk,
    FaultRows,
    FaultStore,
)
from tests.mmu.helpers import A, R, batch, meta


def _chunk(start: int, n: int) -> dict[str, list[int]]:
    """Rows ``start`` .. ``start + n - 1`` as plain lists (an engine may hand anything)."""
    return {k: list(range(start, start + n)) for k in FAULT_COLUMNS}


def test_fault_rows_keep_every_row_in_order_in_the_table_dtypes() -> None:
    rows = FaultRows()
    assert isinstance(rows, FaultStore)
    assert rows.arrays()["row"].dtype == np.int64
    assert len(rows.arrays()["row"]) == 0
    for start, n in ((0, 3), (3, 0), (3, 4), (7, 1)):
        rows.add(_chunk(start, n))  # type: ignore[arg-type]
    assert rows.num_rows == 8
    before = rows.arrays()
    rows.close()
    after = rows.arrays()
    for name, dtype in FAULT_COLUMNS.items():
        assert before[name].dtype == after[name].dtype == dtype, name
        assert before[name].tolist() == after[name].tolist() == list(range(8)), name


class _Recorder:
    """A consumer that only counts what it is given: it keeps no rows."""

    def __init__(self) -> None:
        self.rows = 0
        self.closed = 0

    def add(self, columns: FaultChunk) -> None:
        self.rows += len(columns["row"])

    def close(self) -> None:
        self.closed += 1


@pytest.mark.parametrize("engine", [ReferenceEngine, VectorEngine])
def test_an_engine_writes_its_rows_into_the_consumer_it_is_given(engine: type) -> None:
    rows = [A(1, 5), A(2, 5), A(3, 600), R(4), A(5, 5), A(6, 70_000)]
    kept = engine(meta(), "zap", MmuConfig(), CostModel())
    kept.feed(batch(rows))
    kept_result: EngineResult = kept.finish()
    assert isinstance(kept_result.sink, FaultRows)  # none given: kept in memory
    faults = kept_result.faults
    assert len(faults["row"]) >= 3
    recorder = _Recorder()
    counted = engine(meta(), "zap", MmuConfig(), CostModel(), recorder)
    counted.feed(batch(rows))
    result: EngineResult = counted.finish()
    assert result.sink is recorder
    assert (recorder.rows, recorder.closed) == (len(faults["row"]), 1)
    with pytest.raises(TypeError, match="_Recorder does not keep the fault rows"):
        _ = result.faults
