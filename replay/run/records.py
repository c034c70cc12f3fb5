"""What a replay produced: one :class:`Replay` of a trace, one :class:`PolicyRun` per policy.

The driver (:mod:`.driver`) fills these; the summary (:mod:`.summary`) and the writer
(:mod:`.outputs`) read them. They hold results only, so that the modules that read them need
not import the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, get_args

import numpy as np

if TYPE_CHECKING:
    from replay.mmu.config import CostModel, MmuConfig, Policy
    from replay.mmu.results import EngineResult
    from replay.run.sink import FaultSink
    from replay.run.stats import FaultStats
    from replay.trace.reader import TraceFile

EngineName = Literal["fast", "reference"]
ENGINES: tuple[EngineName, ...] = get_args(EngineName)
"""The engines, by name: ``fast`` (vectorized) and ``reference`` (scalar, the oracle)."""


@dataclass
class TraceCounts:
    """Policy-independent counts of a trace."""

    accesses: dict[tuple[int, int], int]
    """Accesses per (vm, vcpu)."""
    reclaim_by_source: dict[str, int]
    t_first_ns: int | None
    t_last_ns: int | None
    bucket_ns: int
    accesses_by_bucket: np.ndarray
    reclaim_by_bucket: np.ndarray
    rows: int
    region_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    """Trace rows of the DAMON region rows (MODEL.md section 11): their faults are sampled."""
    regions_accessed: int = 0
    """Region rows whose ``nr_accesses`` is above 0: how much of the guests DAMON saw used."""


@dataclass
class PolicyRun:
    """One policy's replay of a trace."""

    policy: Policy
    engine: EngineName
    result: EngineResult
    wall_s: float
    """Time spent inside the engine (reading and validating the trace excluded): for policies
    one walk replayed together (``replay.run.walks``), each is the walk's whole time."""
    stats: FaultStats
    """Its fault statistics, fed as the fault rows were produced."""
    sink: FaultSink
    """Its fault rows: the sink the engine wrote them into (``result.sink``), in memory or
    spilled to a Parquet file."""


@dataclass
class Replay:
    """A trace replayed under one or more policies."""

    trace: TraceFile
    fingerprint: str
    cfg: MmuConfig
    costs: CostModel
    counts: TraceCounts
    runs: list[PolicyRun]
    read_s: float
