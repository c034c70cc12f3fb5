"""What an engine hands back: the fault rows, the scan rows, and two small logs.

Both engines fill the same structures, so that a run's outputs (and the equality of the two
engines) are checked on one representation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

FAULT_COLUMNS: dict[str, type[np.generic]] = {
    "row": np.int64,
    "t_ns": np.int64,
    "vm": np.uint16,
    "vcpu": np.uint16,
    "gfn": np.uint64,
    "cause": np.int8,
    "refill": np.int8,
    "attribution": np.int8,
    "leaf_level": np.int8,
    "new_sps": np.int16,
    "relinked_sps": np.int16,
    "recycled_sps": np.int32,
    "pages_refilled": np.int32,
    "est_ns": np.int64,
}
"""Fault table columns and dtypes (enumerations as codes of ``replay.mmu.config``)."""


@dataclass
class FaultColumns:
    """Fault rows accumulated in chunks of numpy arrays, concatenated at the end."""

    chunks: list[dict[str, np.ndarray]] = field(default_factory=list)

    def add(self, columns: dict[str, np.ndarray]) -> None:
        """Append rows; ``columns`` has every key of :data:`FAULT_COLUMNS`."""
        n = len(columns["row"])
        if n:
            self.chunks.append(
                {k: np.asarray(columns[k], dtype=dt) for k, dt in FAULT_COLUMNS.items()}
            )
            assert all(len(v) == n for v in self.chunks[-1].values())

    def finish(self) -> dict[str, np.ndarray]:
        """All rows, in trace order."""
        if not self.chunks:
            return {k: np.empty(0, dtype=dt) for k, dt in FAULT_COLUMNS.items()}
        return {k: np.concatenate([c[k] for c in self.chunks]) for k in FAULT_COLUMNS}


@dataclass(frozen=True)
class ScanRow:
    """One shrinker scan call (rule 12's scan table)."""

    row: int
    t_ns: int
    event: str
    """``reclaim`` (a call made by a shrink_slab pass) or ``shrink`` (a direct call, rule 10)."""
    source: str | None
    priority: int | None
    nr_to_scan: int
    freed: int
    vms: tuple[int, ...]
    """VMs zapped (zap: at most one) or whose idle vCPUs' caches were emptied (cache), in order."""
    freed_by_vm: tuple[int, ...]
    flush_ns: int
    """Estimated remote TLB flush cost of the call (rule 25): ``zap_flush_ns`` if it zapped."""


@dataclass
class EngineResult:
    """Everything a replay produced."""

    faults: dict[str, np.ndarray]
    scans: list[ScanRow]
    sp_removals: list[tuple[int, int, int, int]]
    """``(row, t_ns, vm, sps)`` for every removal of SPs: shrinker zaps, page limit, zap_all."""
    cache_frees: list[tuple[int, int, int, int, int]]
    """``(row, t_ns, vm, vcpu, pages)`` for every vCPU cache a cache scan emptied of > 0 pages."""
    nr_deferred: int
