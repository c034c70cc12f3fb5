"""Which engine replays which policy, and the walks as the processes' units.

Policies whose page tables go through the same states (``none`` and ``cache``, MODEL.md rule
12) share one walk of the vectorized engine (ENGINE.md, "Shared walks"); every other policy,
and every policy on the reference engine, has an engine of its own. :func:`make_walks` builds
them for a one-process replay; :class:`WalkUnits` makes them in whichever process
:mod:`replay.run.procs` gives a walk to.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from replay.errors import ReplayError
from replay.mmu.config import CostModel, MmuConfig, Policy, shared_walks
from replay.run.records import ENGINES, EngineName, PolicyRun
from replay.run.schema import run_stamp
from replay.run.sink import FaultSink
from replay.run.stats import FaultStats

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from replay.mmu.results import EngineResult, FaultConsumer
    from replay.trace.reader import EventBatch, TraceFile


class Engine(Protocol):
    """What the driver needs of an engine."""

    def feed(self, batch: EventBatch) -> None:
        """Apply a batch of events, in order."""

    def finish(self) -> EngineResult:
        """Return everything the replay produced."""

    @property
    def sp_removals(self) -> list[tuple[int, int, int, int]]:
        """The log of SP removals, appended to as the replay goes."""

    @property
    def cache_frees(self) -> list[tuple[int, int, int, int, int]]:
        """The log of emptied caches, appended to as the replay goes."""


def make_engine(
    name: EngineName,
    trace: TraceFile,
    policy: Policy,
    cfg: MmuConfig,
    costs: CostModel,
    sink: FaultConsumer | None = None,
    lanes: int = 1,
    companions: Sequence[tuple[Policy, FaultConsumer | None]] = (),
) -> Engine:
    """Build the named engine, writing its fault rows into ``sink`` (kept in memory if None).

    ``lanes`` over 1 lets the vectorized engine replay an epoch's VMs on that many threads
    (``replay.mmu.lanes``); the reference engine replays one event at a time whatever it is.
    ``companions`` are more policies the vectorized engine's walk replays
    (:func:`replay.mmu.config.shared_walks`); the reference engine replays one policy.
    """
    if name not in ENGINES:
        raise ReplayError(f"unknown engine {name!r}; use {' or '.join(ENGINES)}")
    if name == "reference":
        from replay.mmu.reference import ReferenceEngine

        if companions:
            raise ValueError("the reference engine replays one policy at a time")
        return ReferenceEngine(trace.meta, policy, cfg, costs, sink)
    from replay.mmu.engine import VectorEngine

    return VectorEngine(trace.meta, policy, cfg, costs, sink, threads=lanes, companions=companions)


def make_walks(
    name: EngineName,
    trace: TraceFile,
    policies: Sequence[Policy],
    cfg: MmuConfig,
    costs: CostModel,
    sinks: Sequence[FaultConsumer | None],
    lanes: int = 1,
) -> tuple[list[Engine], list[Engine], list[int]]:
    """The engines that replay ``policies`` (``sinks``: each one's fault rows) and the walks.

    Policies whose page tables go through the same states share one walk of the vectorized
    engine (:func:`replay.mmu.config.shared_walks`; ENGINE.md, "Shared walks"), which costs
    about one policy's time for all of them. Returns an engine per policy (a companion's is
    its walk's :class:`~replay.mmu.accounts.CompanionRun`, which feeding does nothing to), the
    walks' engines, which alone need feeding, and each policy's walk (an index of those).
    """
    walks = walks_of(name, tuple(policies))
    engines: list[Any] = [None] * len(policies)
    walk_of = [0] * len(policies)
    fed: list[Engine] = []
    for k, walk in enumerate(walks):
        first, *others = walk
        companions = [(policies[j], sinks[j]) for j in others]
        walker = make_engine(
            name, trace, policies[first], cfg, costs, sinks[first], lanes, companions
        )
        engines[first] = walker
        for nth, j in enumerate(others, start=1):
            engines[j] = walker.companion(nth)  # type: ignore[attr-defined]
        for j in walk:
            walk_of[j] = k
        fed.append(walker)
    return engines, fed, walk_of


def walks_of(name: EngineName, policies: tuple[Policy, ...]) -> list[tuple[int, ...]]:
    """The walks that replay ``policies`` on engine ``name`` (the reference: one a policy)."""
    if name == "fast":
        return shared_walks(policies)
    return [(i,) for i in range(len(policies))]


def stats_and_sinks(
    trace: TraceFile,
    policies: Sequence[Policy],
    costs: CostModel,
    bucket_ns: int,
    workdir: Path | None,
    fingerprint: str,
    *,
    background: bool,
) -> tuple[list[FaultStats], list[FaultSink]]:
    """Each policy's statistics, and its fault sink feeding them the rows as it hands them on.

    With a ``workdir`` the rows spill to ``workdir/<policy>.faults.parquet`` (on the writer
    thread when ``background``); without one they stay in memory.
    """
    stats = [FaultStats(trace.meta.vms, costs, bucket_ns) for _ in policies]
    sinks = [
        FaultSink(
            workdir / f"{policy}.faults.parquet" if workdir else None,
            run_stamp(policy, fingerprint),
            st.feed,
            background=background,
        )
        for policy, st in zip(policies, stats, strict=True)
    ]
    return stats, sinks


def attach_logs(stats: Sequence[FaultStats], engines: Sequence[Engine]) -> None:
    """Let each policy's statistics read its engine's removal and cache logs as they grow."""
    for st, eng in zip(stats, engines, strict=True):
        st.attach(eng.sp_removals, eng.cache_frees)


@dataclass(frozen=True)
class Setup:
    """What every policy's replay shares, in whichever process it runs."""

    trace: TraceFile
    engine: EngineName
    cfg: MmuConfig
    costs: CostModel
    bucket_ns: int
    workdir: Path
    fingerprint: str
    background: bool
    lanes: int


class _WalkReplay:
    """The policies of one walk (``make_walks``): their engines, fault sinks and statistics.

    Made in the process that replays them (``.procs``); each policy is a unit of its own there
    (:meth:`unit`), the walk fed by its first policy's.
    """

    def __init__(self, setup: Setup, policies: list[Policy]) -> None:
        self.setup = setup
        self.policies = policies
        self.stats, self.sinks = stats_and_sinks(
            setup.trace, policies, setup.costs, setup.bucket_ns, setup.workdir, setup.fingerprint,
            background=setup.background,
        )  # fmt: skip
        self.engines, (self.walker,), _ = make_walks(
            setup.engine, setup.trace, policies, setup.cfg, setup.costs, self.sinks, setup.lanes
        )
        attach_logs(self.stats, self.engines)
        self.wall_s = 0.0
        self.started = False

    def unit(self, i: int) -> _PolicyUnit:
        """Policy ``i`` of the walk as a unit: the first feeds the walk, the others wait."""
        return _PolicyUnit(self, i)

    def feed(self, batch: EventBatch) -> None:
        """Replay a batch (not empty) for every policy of the walk."""
        if not self.started:  # the trace's first time: timeline buckets count from it
            for st in self.stats:
                st.t0 = int(batch.t_ns[0])
            self.started = True
        t0 = time.perf_counter()
        self.walker.feed(batch)
        self.wall_s += time.perf_counter() - t0

    def finish(self, i: int) -> PolicyRun:
        """Policy ``i``'s run, its statistics complete (sent to the parent whole)."""
        t0 = time.perf_counter()
        result = self.engines[i].finish()
        self.wall_s += time.perf_counter() - t0
        self.stats[i].end()
        return PolicyRun(
            self.policies[i], self.setup.engine, result, self.wall_s, self.stats[i], self.sinks[i]
        )

    def close(self) -> None:
        """Stop the engine's lanes, if any (finish stops them too)."""
        close = getattr(self.walker, "close", None)
        if close is not None:
            close()


@dataclass
class _PolicyUnit:
    """One policy of a walk, as the processes' :class:`~replay.run.procs.Unit`."""

    walk: _WalkReplay
    i: int

    def feed(self, batch: EventBatch) -> None:
        """The walk's first policy replays the batch for all; the others need not."""
        if self.i == 0:
            self.walk.feed(batch)

    def finish(self) -> PolicyRun:
        return self.walk.finish(self.i)

    def close(self) -> None:
        self.walk.close()


class WalkUnits:
    """``make_unit`` of the processes' plan: a policy's unit, the walk made once per process."""

    def __init__(self, setup: Setup, policies: tuple[Policy, ...], walks: list[tuple[int, ...]]):
        self.setup = setup
        self.policies = policies
        self.walks = walks
        self._made: dict[tuple[int, int], _WalkReplay] = {}
        """By (process id, walk): a child forked after this process made a walk has a copy."""

    def __call__(self, pos: int) -> _PolicyUnit:
        """The unit of policy position ``pos``; its walk is made once in this process."""
        k = next(k for k, walk in enumerate(self.walks) if pos in walk)
        walk = self._made.get((os.getpid(), k))
        if walk is None:
            walk = _WalkReplay(self.setup, [self.policies[j] for j in self.walks[k]])
            self._made[(os.getpid(), k)] = walk
        return walk.unit(self.walks[k].index(pos))


POLICY_COST = {"zap": 2.0, "none": 1.0, "cache": 1.0}
"""A policy's replay time, relative: zap's shrinker zaps and refaults take about as long as
none and cache together (measured on the scaling traces, scripts/PERFORMANCE.md)."""

COMPANION_COST = 0.3
"""What one more policy costs a walk that replays it beside another (its caches, costs and
fault file; ENGINE.md, "Shared walks"), relative like :data:`POLICY_COST`."""
