"""Drive one or several engines over a trace, streamed once.

The trace is read batch by batch; every engine gets each batch in turn (one per policy, but
one walk for the policies that keep page tables, ``replay.run.walks``), so a run of three
policies reads the file once. The driver also counts what does not depend on the
policy: accesses per vCPU and per time bucket, reclaim passes by source.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from replay._threads import run_all
from replay.errors import TraceDataError
from replay.mmu.config import CostModel, MmuConfig, Policy
from replay.run.records import EngineName, PolicyRun, Replay, TraceCounts
from replay.run.span import Span, check_span
from replay.run.walks import (
    COMPANION_COST,
    POLICY_COST,
    Engine,
    Setup,
    WalkUnits,
    attach_logs,
    make_walks,
    stats_and_sinks,
    walks_of,
)
from replay.trace.reader import EventBatch, TraceFile, iter_batches, prefetched
from replay.trace.schema import EVENT_CODE, SOURCES

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterator
    from pathlib import Path

    from replay.trace.schema import VmSpec

DEFAULT_BUCKET_NS = 100_000_000

ONE_THREAD_BELOW_ROWS = 100_000
"""A trace shorter than this is replayed on one thread when ``threads`` is not given: a child
process and its ring cost about 0.1 s, more than sharing so little work saves (the bundled
sample, 20 k rows: 0.43 to 0.48 s on one thread, 0.53 to 0.64 s in two processes;
scripts/PERFORMANCE.md, "Short traces")."""


def cores() -> int:
    """The cores this process may run on (``replay run --threads``'s default)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


@dataclass
class _Histogram:
    """Counts per time bucket, growing as the trace goes on."""

    bucket_ns: int
    t0: int | None = None
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    def add(self, t_ns: np.ndarray) -> None:
        if not len(t_ns):
            return
        if self.t0 is None:
            self.t0 = int(t_ns[0])
        self._grow(np.bincount((t_ns - self.t0) // self.bucket_ns))

    def add_sorted(self, t_ns: np.ndarray, less: np.ndarray) -> None:
        """Count ``t_ns`` (sorted) except the times in ``less`` (a subset of them).

        A sorted batch spans few buckets: their edges are found by binary search, not by
        bucketing every row.
        """
        if not len(t_ns):
            return
        if self.t0 is None:
            self.t0 = int(t_ns[0])
        first = (int(t_ns[0]) - self.t0) // self.bucket_ns
        last = (int(t_ns[-1]) - self.t0) // self.bucket_ns
        edges = self.t0 + self.bucket_ns * np.arange(first + 1, last + 1, dtype=np.int64)
        ends = np.append(np.searchsorted(t_ns, edges, side="left"), len(t_ns))
        counts = np.diff(ends, prepend=0)
        if len(less):
            counts -= np.bincount((less - self.t0) // self.bucket_ns - first, minlength=len(counts))
        self._grow(counts, at=first)

    def _grow(self, add: np.ndarray, at: int = 0) -> None:
        """Add ``add`` to the counts of buckets ``at`` onwards."""
        end = at + len(add)
        if end > len(self.counts):
            self.counts = np.concatenate(
                [self.counts, np.zeros(end - len(self.counts), dtype=np.int64)]
            )
        self.counts[at:end] += add


class _PerVcpu:
    """Accesses per (vm, vcpu): a bincount over both packed into one small integer."""

    def __init__(self, vms: tuple[VmSpec, ...]) -> None:
        self.vms = vms
        self.stride = max(v.vcpus for v in vms)
        self.n = len(vms) * self.stride
        # Small integers (uint16 when they fit) make the packing and the count cheaper.
        self.dtype = np.uint16 if self.n < 0xFFFF else np.uint32
        self.slot_of = np.zeros(0x10000, dtype=self.dtype)  # VM id -> its vCPU 0's slot
        for i, vm in enumerate(vms):
            self.slot_of[vm.id] = i * self.stride
        self.counts = np.zeros(self.n + 1, dtype=np.int64)

    def add(self, vm: np.ndarray, vcpu: np.ndarray, host: np.ndarray) -> None:
        """Count a batch's accesses; ``host`` lists its other rows.

        Host events are few: every row is counted, then the host rows are taken back out.
        Their vm and vcpu slots may hold anything, so slots are capped at ``n`` (the bin no
        access reaches) and wrap as they will; the same slots come back out exactly.
        """
        slots = self.slot_of[vm]
        np.add(slots, vcpu.astype(self.dtype, copy=False), out=slots)
        np.minimum(slots, self.n, out=slots)
        self.counts += np.bincount(slots, minlength=self.n + 1)
        if len(host):
            self.counts -= np.bincount(slots[host], minlength=self.n + 1)

    def by_vcpu(self) -> dict[tuple[int, int], int]:
        return {
            (vm.id, c): int(self.counts[i * self.stride + c])
            for i, vm in enumerate(self.vms)
            for c in range(vm.vcpus)
        }


def fingerprint(trace: TraceFile) -> str:
    """A cheap identity of a trace's content: sha256 of its Parquet footer and its size.

    The footer holds every column chunk's offsets, sizes and statistics, so two traces with the
    same footer hold the same rows in practice; reading it costs a few kilobytes, not the file.
    """
    with trace.path.open("rb") as fh:
        fh.seek(-8, 2)
        tail = fh.read(8)
        footer_len = int.from_bytes(tail[:4], "little")
        fh.seek(-(8 + footer_len), 2)
        footer = fh.read(footer_len)
    digest = hashlib.sha256(footer)
    digest.update(str(trace.size_bytes).encode())
    return "sha256:" + digest.hexdigest()


class _TraceCounter:
    """The policy-independent counts of a trace (:class:`TraceCounts`), a batch at a time."""

    def __init__(self, vms: tuple[VmSpec, ...], bucket_ns: int) -> None:
        self.bucket_ns = bucket_ns
        self.access_hist = _Histogram(bucket_ns)
        self.reclaim_hist = _Histogram(bucket_ns)
        self.per_vcpu = _PerVcpu(vms)
        self.by_source = np.zeros(len(SOURCES), dtype=np.int64)
        self.first: int | None = None
        self.last: int | None = None
        self.rows = 0
        self.regions: list[np.ndarray] = []
        self.regions_accessed = 0

    def add(self, batch: EventBatch) -> None:
        """Count a batch of events (not empty)."""
        if self.first is None:
            self.first = int(batch.t_ns[0])
            self.access_hist.t0 = self.reclaim_hist.t0 = self.first
        self.last = int(batch.t_ns[-1])
        host = batch.host
        self.per_vcpu.add(batch.vm, batch.vcpu, host)
        self.access_hist.add_sorted(batch.t_ns, batch.t_ns[host])
        rec = host[batch.event[host] == EVENT_CODE["reclaim"]]
        self.reclaim_hist.add(batch.t_ns[rec])
        self.by_source += np.bincount(batch.source[rec], minlength=len(SOURCES))
        regions = host[batch.event[host] == EVENT_CODE["region"]]
        if len(regions):
            self.regions.append(regions + batch.start_row)
            self.regions_accessed += int(np.count_nonzero(batch.nr_accesses[regions]))
        self.rows += len(batch)

    def check(self, trace: TraceFile) -> None:
        """Refuse a trace with nothing to replay."""
        if self.rows == 0:
            raise TraceDataError(
                f"trace {trace.path} has no events; nothing to replay (generate one with "
                "replay synth)"
            )
        if not self.per_vcpu.counts.any() and not self.regions:
            raise TraceDataError(
                f"trace {trace.path} has no access events (only host pressure); a replay needs "
                "guest accesses or faults"
            )

    def counts(self) -> TraceCounts:
        """Everything counted."""
        return TraceCounts(
            accesses=self.per_vcpu.by_vcpu(),
            reclaim_by_source={s: int(self.by_source[i]) for i, s in enumerate(SOURCES)},
            t_first_ns=self.first,
            t_last_ns=self.last,
            bucket_ns=self.bucket_ns,
            accesses_by_bucket=self.access_hist.counts,
            reclaim_by_bucket=self.reclaim_hist.counts,
            rows=self.rows,
            region_rows=(
                np.concatenate(self.regions).astype(np.int64)
                if self.regions
                else np.zeros(0, dtype=np.int64)
            ),
            regions_accessed=self.regions_accessed,
        )


def run_policies(  # noqa: PLR0913 -- keyword-only options, see tests/test_codebase.py
    trace: TraceFile,
    policies: tuple[Policy, ...],
    *,
    engine: EngineName = "fast",
    cfg: MmuConfig | None = None,
    costs: CostModel | None = None,
    bucket_ns: int = DEFAULT_BUCKET_NS,
    progress: Callable[[int, int], None] | None = None,
    workdir: Path | None = None,
    threads: int | None = 1,
    background: bool = True,
) -> Replay:
    """Replay ``trace`` under every policy in ``policies``, reading it once.

    Parameters
    ----------
    trace
        An opened trace (:func:`replay.open_trace`).
    policies
        Shrinker policies to replay: ``zap``, ``none``, ``cache``; each with its own engine, but
        ``none`` and ``cache`` share one walk (``replay.run.walks``).
    engine
        ``fast`` (vectorized) or ``reference`` (the scalar oracle); both give the same rows.
    cfg, costs
        The model's constants and the cost model (defaults: MODEL.md sections 1 and 8).
    bucket_ns
        Width of the timeline's time buckets.
    progress
        Called with (rows done, rows in all) after every batch.
    workdir
        Where each policy's fault rows are written as they are produced
        (``workdir/<policy>.faults.parquet``), so memory does not grow with the trace; without
        it they stay in memory.
    threads
        Cores for the engines: the walks (``replay.run.walks``) are replayed side by side
        (they share the trace and nothing else), and the threads left over split each epoch's
        VMs between lanes (``replay.mmu.lanes``). With a ``workdir``, the walks go to up to
        ``threads`` processes (this one included, which also reads the trace), balanced by
        their cost (:mod:`replay.run.procs`); without one, to threads. 1 replays everything
        on the calling thread. None means one per core for the walks and no lanes: on the GIL,
        lanes cost more CPU than they save (ENGINE.md, "Lanes"); and 1 for a trace of fewer
        than :data:`ONE_THREAD_BELOW_ROWS` rows. The rows are the same whatever it is.
    background
        Read the next batches ahead and write the fault files on background threads, so a
        lone replay overlaps them with the engines on other cores (``replay run``). False keeps
        the replay on the calling thread, one core: a fleet worker's job, whose other cores
        run other jobs (the threads' hand-offs then cost CPU for nothing). Same outputs.

    Returns
    -------
    Replay
        The trace's policy-independent counts and one :class:`~replay.run.records.PolicyRun`
        per policy, in the order given; :func:`replay.write_runs` writes them.

    Raises
    ------
    ReplayError
        A row of the trace breaks the schema (named by its row), or the trace holds no access.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_scenario, open_trace, run_policies
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> replay = run_policies(open_trace("quick.parquet"), ("zap", "cache"))
    >>> replay.counts.rows, [(run.policy, len(run.result.faults["row"])) for run in replay.runs]
    (20018, [('zap', 8801), ('cache', 8099)])
    """
    cfg = cfg or MmuConfig()
    costs = costs or CostModel()
    trace_fingerprint = fingerprint(trace)
    # Before anything is replayed: the timeline's buckets, and every time, within bounds.
    span = check_span(trace, bucket_ns)
    if threads is None and trace.num_rows < ONE_THREAD_BELOW_ROWS:
        threads = 1
    walks = len(walks_of(engine, policies))
    lanes = 1 if threads is None else max(1, threads // walks)
    if workdir is not None and walks > 1 and threads != 1 and _can_fork():
        setup = Setup(
            trace, engine, cfg, costs, bucket_ns, workdir, trace_fingerprint, background, lanes
        )
        return _replay_in_processes(setup, policies, span, threads or cores(), progress)
    # Each policy's summary statistics are fed its fault rows as the sink hands them on (on
    # the writer thread when spilling), not read back from the fault file afterwards.
    stats, sinks = stats_and_sinks(
        trace, policies, costs, bucket_ns, workdir, trace_fingerprint, background=background
    )
    if threads is None:
        threads = min(cores(), walks)
    engines, walkers, walk_of = make_walks(engine, trace, policies, cfg, costs, sinks, lanes)
    attach_logs(stats, engines)
    counter = _TraceCounter(trace.meta.vms, bucket_ns)
    feeder = _Feeder(walkers, min(threads, len(walkers)))
    read_s = 0.0
    rows = 0
    t_read = time.perf_counter()
    reading = _read(trace, span, counter, background)
    try:
        for batch in reading:
            read_s += time.perf_counter() - t_read
            if len(batch):
                if rows == 0:
                    for st in stats:
                        st.t0 = int(batch.t_ns[0])
                feeder.feed(batch)
            rows += len(batch)
            if progress is not None:
                progress(rows, trace.num_rows)
            t_read = time.perf_counter()
    finally:
        try:
            reading.close()  # the reader thread stops here, not whenever an error's frames go
        finally:
            feeder.close()
    counter.check(trace)
    runs = []
    for policy, eng, walk, st, sink in zip(policies, engines, walk_of, stats, sinks, strict=True):
        t0 = time.perf_counter()
        result = eng.finish()
        # A companion reports its walk's time: the walk replayed it.
        engine_s = feeder.walls[walk] + time.perf_counter() - t0
        runs.append(PolicyRun(policy, engine, result, engine_s, st, sink))
    return Replay(trace, trace_fingerprint, cfg, costs, counter.counts(), runs, read_s)


def _read(
    trace: TraceFile, span: Span, counter: _TraceCounter, background: bool
) -> Generator[EventBatch, None, None]:
    """The trace's batches, each checked against the span and counted first.

    With ``background`` the batches are decoded, checked and counted on the reader thread,
    ahead of the engines: the counts do not depend on the policy, so they need not wait for
    an engine, nor an engine for them. Without it, all on the calling thread, in order.
    """

    def counted(batches: Iterator[EventBatch]) -> Generator[EventBatch, None, None]:
        for batch in batches:
            if len(batch):
                span.check_batch(trace, batch.start_row, int(batch.t_ns[0]), int(batch.t_ns[-1]))
                counter.add(batch)
            yield batch

    if background:
        return prefetched(counted(iter_batches(trace)))
    return counted(iter_batches(trace))


class _Feeder:
    """Hands every batch to every engine (a walk each): side by side on ``threads`` threads.

    The engines share the trace's batches, which nobody writes, and nothing else, so they
    need no join but the one after each batch (which keeps the read-ahead bounded). The
    calling thread replays the first engine itself.
    """

    def __init__(self, engines: list[Engine], threads: int) -> None:
        self.engines = engines
        self.walls = [0.0] * len(engines)
        """Each engine's time in ``feed``, seconds."""
        self._pool: Any = None
        if threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="policy")

    def feed(self, batch: EventBatch) -> None:
        """Feed ``batch`` to every engine; re-raise the first error once all have stopped."""
        if self._pool is None:
            for i in range(len(self.engines)):
                self._feed_one(i, batch)
            return
        run_all(self._pool, [partial(self._feed_one, i, batch) for i in range(len(self.engines))])

    def _feed_one(self, i: int, batch: EventBatch) -> None:
        t0 = time.perf_counter()
        self.engines[i].feed(batch)
        self.walls[i] += time.perf_counter() - t0

    def close(self) -> None:
        """Stop the threads, the engines' lanes included: nothing is left running."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for eng in self.engines:
            close = getattr(eng, "close", None)
            if close is not None:
                close()


def _can_fork() -> bool:
    """Whether the policies can go to child processes here (Linux: fork and memfd_create)."""
    return hasattr(os, "fork") and hasattr(os, "memfd_create")


def _replay_in_processes(
    setup: Setup,
    policies: tuple[Policy, ...],
    span: Span,
    workers: int,
    progress: Callable[[int, int], None] | None,
) -> Replay:
    """``run_policies`` with the policies in child processes fed one read of the trace.

    This process reads, checks and counts the trace; ``workers`` processes replay the
    policies (:mod:`replay.run.procs`, which says why and how).
    """
    from replay.run.procs import Plan, replay_in_processes, split
    from replay.trace.reader import BATCH_ROWS

    trace = setup.trace
    counter = _TraceCounter(trace.meta.vms, setup.bucket_ns)
    walks = walks_of(setup.engine, policies)
    costs = [POLICY_COST.get(policies[w[0]], 1.0) + COMPANION_COST * (len(w) - 1) for w in walks]
    local_walks, walk_groups = split(costs, workers)

    def positions(group: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(pos for k in group for pos in walks[k]))

    plan = Plan(
        groups=tuple(positions(g) for g in walk_groups),
        names=policies,
        make_unit=WalkUnits(setup, policies, walks),
        batch_rows=BATCH_ROWS,
        local=positions(local_walks),
    )
    waited = [0.0]
    rows = [0]

    def batches() -> Generator[EventBatch, None, None]:
        reading = _read(trace, span, counter, setup.background)
        try:
            while True:
                t0 = time.perf_counter()
                batch = next(reading, None)
                waited[0] += time.perf_counter() - t0
                if batch is None:
                    return
                yield batch
        finally:
            reading.close()

    def sent(batch: EventBatch) -> None:
        rows[0] += len(batch)
        if progress is not None:
            progress(rows[0], trace.num_rows)

    feed = batches()
    try:
        runs = replay_in_processes(feed, plan, sent, partial(counter.check, trace))
    finally:
        feed.close()  # on an error too: the reader thread stops now
    return Replay(
        trace,
        setup.fingerprint,
        setup.cfg,
        setup.costs,
        counter.counts(),
        [run for run in runs if isinstance(run, PolicyRun)],
        waited[0],
    )
