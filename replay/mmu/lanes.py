"""Lanes: the VMs of one epoch replayed side by side, joined before the next host event.

Between two host events the VMs do not interact: an access reads and changes only its own VM's
leaves and SPs and its own vCPU's caches (rules 2-8, 13, 16, 18-20, 22, 25), and the only
state every VM shares, the shrinker's ``vm_list`` and ``nr_deferred`` and the pressure window,
is changed by host events alone (rules 9-12, 24). So an epoch's accesses split by VM into
lanes, each lane replays its share with the engine's own code (:meth:`VectorEngine._steps`)
on its own thread, and the lanes' fault rows, merged by trace row, are the rows one thread
would have written. The host event after the epoch waits for every lane (the shrinker walks
``vm_list`` and counts every VM's pages, rules 9-12).

What a lane writes is its own VMs' part of the shared arrays (leaf keys, SP ids and vCPUs are
numbered per VM, and a VM's leaf keys start on a fresh block of 512, so no byte is shared) or
lane-private: its candidate selector's scratch tables, its page-limit carry-over, its fault
rows and its page-limit zaps (rule 13), merged by row at the join. ENGINE.md ("Lanes") has
the design and the measurements behind it.
"""

from __future__ import annotations

import copy
import dataclasses
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from replay._threads import run_all
from replay.mmu.candidates import CandidateSelector
from replay.mmu.results import FaultRows

if TYPE_CHECKING:
    from replay.mmu.layout import Layout
    from replay.mmu.machine import MmuState
    from replay.mmu.results import FaultChunk, FaultConsumer
    from replay.mmu.tables import LookupTables

MIN_SPLIT = 1 << 15
"""Epochs shorter than this run on one lane: handing them out costs more than it saves."""


class Epoch(Protocol):
    """A run of accesses between two host events (the engine's ``Epoch``)."""

    @property
    def vm(self) -> np.ndarray:
        """Each access's VM id."""

    def __len__(self) -> int:
        """The number of accesses."""

    def of_lane(self, lanes: np.ndarray, lane: int) -> Epoch:
        """The accesses of lane ``lane``; ``lanes`` holds every access's lane."""


class VectorEngine(Protocol):
    """What a lane is: the vectorized engine (``replay.mmu.engine.VectorEngine``)."""

    lay: Layout
    tables: LookupTables
    state: MmuState
    selector: CandidateSelector
    accounts: list[Any]
    sp_removals: list[tuple[int, int, int, int]]
    lanes: Lanes | None
    _carried_recycled: int

    def _steps(self, epoch: Any) -> None:  # the engine's own epoch type, which is an Epoch
        """Replay an epoch's accesses, a step at a time."""


class Lanes:
    """An engine's lanes: ``n`` shallow copies of it, each replaying some VMs' accesses."""

    def __init__(self, engine: VectorEngine, n: int) -> None:
        lay = engine.lay
        self.engine = engine
        self.n = min(n, lay.n_vms)
        # Round robin over vm_list's order; which lane replays a VM changes no answer.
        self.lane_of_vm = np.zeros(0x10000, dtype=np.uint8)
        self.lane_of_vm[lay.vm_ids] = np.arange(lay.n_vms) % self.n
        self.engines = [_lane_engine(engine) for _ in range(self.n)]
        self._pool: ThreadPoolExecutor | None = None

    def splits(self, epoch: Epoch) -> bool:
        """Whether ``epoch`` is worth splitting."""
        return self.n > 1 and len(epoch) >= MIN_SPLIT

    def run(self, epoch: Epoch) -> None:
        """Replay ``epoch`` on every lane, then hand the merged rows to the engine's sink."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.n - 1, thread_name_prefix="engine-lane")
        lanes = self.lane_of_vm[epoch.vm]
        run_all(
            self._pool,
            [partial(_run_share, lane, epoch, lanes, k) for k, lane in enumerate(self.engines)],
        )
        self._join()

    def _join(self) -> None:
        """Merge the lanes' page-limit zaps and fault rows into the engine's, by trace row.

        The zaps first: handing rows on may feed the run's statistics at once (a spilled row
        group), and those count every removal logged up to a chunk's last row as done.
        """
        zaps: list[tuple[int, int, int, int]] = []
        for lane in self.engines:
            zaps.extend(lane.sp_removals)
            lane.sp_removals.clear()
        zaps.sort()
        self.engine.sp_removals.extend(zaps)
        for k, account in enumerate(self.engine.accounts):
            chunks = []
            for lane in self.engines:
                rows = lane.accounts[k].faults
                assert isinstance(rows, FaultRows)
                if rows.num_rows:
                    chunks.append(rows.arrays())
            _add_merged(account.faults, chunks)
        for lane in self.engines:
            lane.accounts = _fresh_rows(lane.accounts)

    def close(self) -> None:
        """Stop the lanes' threads (idle between epochs; nothing is left running)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def _lane_engine(engine: VectorEngine) -> VectorEngine:
    """A lane: the engine's state, tables and caches shared, its scratch and outputs its own."""
    lane = copy.copy(engine)
    lane.selector = CandidateSelector(engine.tables, engine.state)
    lane.accounts = _fresh_rows(engine.accounts)
    lane.sp_removals = []
    lane.lanes = None
    return lane


def _fresh_rows(accounts: list[Any]) -> list[Any]:
    """The accounts (``replay.mmu.accounts.Account``), each with new, empty fault rows."""
    return [dataclasses.replace(account, faults=FaultRows()) for account in accounts]


def _add_merged(faults: FaultConsumer, chunks: list[FaultChunk]) -> None:
    """Add the lanes' rows ``chunks`` (each in trace order) to ``faults``, merged by row."""
    if len(chunks) == 1:
        faults.add(chunks[0])
    elif chunks:
        rows = np.concatenate([c["row"] for c in chunks])
        order = np.argsort(rows, kind="stable")  # each lane's rows are in order: runs
        faults.add({k: np.concatenate([c[k] for c in chunks])[order] for k in chunks[0]})


def _run_share(lane: VectorEngine, epoch: Epoch, lanes: np.ndarray, k: int) -> None:
    """Lane ``k``'s share of ``epoch`` (``lanes``: each access's lane), in trace order."""
    share = epoch.of_lane(lanes, k)
    if len(share):
        lane._carried_recycled = 0
        lane._steps(share)
