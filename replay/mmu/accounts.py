"""A policy's own part of a replay, and the run of a policy another policy's walk replays.

Policies whose page tables go through the same states share one walk of the vectorized engine
(ENGINE.md, "Shared walks"); each keeps an :class:`Account` of what is its own, and the driver
finishes a companion through its :class:`CompanionRun` like an engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from replay.mmu.results import EngineResult

if TYPE_CHECKING:
    from replay.mmu.caches import VcpuCaches
    from replay.mmu.config import Policy
    from replay.mmu.host import HostEvents
    from replay.mmu.results import FaultConsumer
    from replay.trace.reader import EventBatch


@dataclass(frozen=True)
class Account:
    """One policy's own part of a replay: what it keeps apart when it shares a walk.

    Its vCPUs' caches and busy windows (rules 3a, 16), its shrinker (``host``: the scans,
    ``vm_list``, ``nr_deferred``, the pressure window; rules 9-12, 24) and its fault rows. The
    page tables, and everything read from them, are the walk's (ENGINE.md, "Shared walks").
    """

    policy: Policy
    caches: VcpuCaches
    host: HostEvents
    faults: FaultConsumer

    def result(self) -> EngineResult:
        """The policy's results, its fault rows closed."""
        self.faults.close()
        return EngineResult(
            sink=self.faults,
            scans=self.host.scans,
            sp_removals=self.host.sp_removals,
            cache_frees=self.host.cache_frees,
            nr_deferred=self.host.nr_deferred,
        )


class Walk(Protocol):
    """The engine whose walk a companion shares (only stopping it is asked of it here)."""

    def close(self) -> None:
        """Stop the engine's lanes, if any."""


class CompanionRun:
    """A policy replayed by another policy's engine, as the driver sees an engine.

    Its walk is the engine's (``replay.mmu.engine.VectorEngine``), fed by the engine's ``feed``:
    feeding it does nothing. Finish it once the engine has been fed the whole trace.
    """

    def __init__(self, engine: Walk, account: Account) -> None:
        self.engine = engine
        self.account = account
        self.sp_removals = account.host.sp_removals
        self.cache_frees = account.host.cache_frees

    def feed(self, batch: EventBatch) -> None:
        """Nothing: the engine replays the batch for this policy too."""

    def finish(self) -> EngineResult:
        """The policy's results."""
        self.engine.close()
        return self.account.result()
