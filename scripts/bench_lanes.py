"""Benchmark: the engine's lanes in worker processes over shared memory (issue 16), measured.

Usage::

    python scripts/bench_lanes.py TRACE.parquet [TRACE.parquet ...] [--repeat 3] [--share0 0.35]
        [--serial] [--trim] [--fresh] [--wait 120]

The engine's lanes (``replay.mmu.lanes``) split an epoch's VMs between threads and give no
speed-up on the GIL (ENGINE.md, "Lanes"). This script holds the measured prototype of the other
way, lanes in processes over shared memory, and compares it with one lane: the vectorized
engine alone (policy ``zap``) over each trace's batches read into memory once, pairs of runs
(one lane, then two process lanes). Per run: wall time from building the engine (which forks
the worker) to ``finish`` (which reaps it); CPU time (user + system) of this process and of the
worker; other processes' CPU meanwhile (from ``/proc/stat``); and a digest of every fault row,
scan row and SP-removal log entry, which must be the same for every run.

On a machine other jobs share, a pair counts only if no run of it shared the cores (other
processes' CPU under 5 % of its wall time); pairs are tried until ``--repeat`` count (at most
three times as many), each after waiting up to ``--wait`` seconds for an idle second. Prints one
JSON line per trace: every run as ``[wall, cpu, worker cpu, others' cpu]`` and the best and
median of the counted ones. ``--serial`` runs the lanes one after the other (their work without
contention), ``--trim`` gives the free heap back before the fork, ``--fresh`` runs every replay
in a new process (read, then replay, as a command would).

The prototype (:class:`ProcessLanes`, attached to a one-lane engine in place of its lanes):

* every array an access writes (leaves, SPs, reachability and the live fast table, vCPU caches)
  is copied into an anonymous ``MAP_SHARED`` mapping before the worker forks, and so is the
  packed copy of ``present`` (the engine's ``Leaves.pack`` is redirected into a shared store);
  nothing is named in ``/dev/shm``, so nothing is left to unlink;
* one worker per lane past the first is forked when the lanes are attached, before any batch
  is read (no thread is running then); it ignores SIGINT, leaves by ``os._exit``;
* an epoch goes to the lanes in pieces of at most :data:`PIECE` accesses, copied into a shared
  buffer; each VM's lane is set per piece from its accesses in it, lane 0 (this process, which
  also hands over and joins) taking ``--share0`` of them; a request and an answer over a pipe
  are the join; the answer carries the worker's fault rows and page-limit zaps (pickled), which
  are merged by trace row;
* the SP creation counter (``Sps.next_seq``) is a Python int each process advances alone: both
  lanes start a piece from the same value and the larger end is kept, so the numbers of one VM's
  SPs still rise in creation order (rule 11 compares them only within a VM) and no output shows
  them; the pressure window's start (``last_reclaim_t``) goes with every request.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import hashlib
import json
import mmap
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection, Pipe
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.mmu import engine as engine_module
from replay.mmu.candidates import CandidateSelector
from replay.mmu.config import CostModel, MmuConfig
from replay.mmu.engine import VectorEngine
from replay.mmu.results import FaultRows
from replay.trace import open_trace
from replay.trace.reader import iter_batches

if TYPE_CHECKING:
    from replay.mmu.results import FaultChunk

PIECE = 1 << 20
"""Accesses handed over at once (any prefix of an epoch is an epoch of its own)."""

MIN_SPLIT = 1 << 15
"""Epochs shorter than this stay in this process, as with the thread lanes."""

SHARED = {
    "leaves": ("present", "cause"),
    "sps": ("exists", "linked", "unlink_cause", "seq", "live", "zap_mark"),
    "hits": ("reach", "live_key"),
    "caches": ("shadow_page", "page_header", "pte_list_desc", "emptied", "busy_until"),
}
"""Every array the step path writes, by owner."""

FAULT_WEIGHT = 30.0
"""A fault's cost in accesses, for the split (the hit test is cheap, a fault's work is not)."""


def rows_vm(chunks: list[FaultChunk]) -> np.ndarray:
    """The VM of every fault row of ``chunks``."""
    return np.concatenate([c["vm"] for c in chunks]).astype(np.int64)


QUIET = 0.05
"""A run counts if other processes' CPU meanwhile was at most this fraction of its wall time."""

Removal = tuple[int, int, int, int]


@dataclass(frozen=True)
class Setup:
    """How the process lanes run."""

    share0: float = 0.35
    """Lane 0's part of a piece's work (it also hands over and joins)."""
    serial: bool = False
    """Lane 0 waits for the workers before its share: the lanes' work without contention."""
    trim: bool = False
    """Give the free heap back to the system before the fork (``malloc_trim``): pages both
    processes would otherwise copy on their first write."""

    def flags(self) -> list[str]:
        """This setup as command-line options."""
        return [f"--share0={self.share0}"] + ["--serial"] * self.serial + ["--trim"] * self.trim


Answer = tuple["FaultChunk | None", list[Removal], int]


def shared_zeros(n: int, dtype: Any) -> np.ndarray:
    """``n`` zeros in an anonymous shared mapping (pages made as they are touched)."""
    dt = np.dtype(dtype)
    buf = mmap.mmap(-1, max(n * dt.itemsize, 1), flags=mmap.MAP_SHARED)
    return np.frombuffer(buf, dtype=dt, count=n)


def to_shared(arr: np.ndarray) -> np.ndarray:
    """A shared copy of the 1-d ``arr`` (its zero pages left untouched)."""
    out = shared_zeros(len(arr), arr.dtype)
    if arr.any():
        out[:] = arr
    return out


_LIVE: list[Connection] = []
"""This process's ends of its workers' pipes: a worker forked later closes its copies, or an
earlier worker would never read EOF while the later one lives."""


class Worker:
    """A forked process answering requests over a pipe with ``serve(request)``."""

    def __init__(self, serve: Any) -> None:
        mine, theirs = Pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                gc.freeze()  # the inherited objects are never collected (nor their pages copied)
                for conn in (mine, *_LIVE):
                    conn.close()
                _serve(theirs, serve)
            except BaseException:
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        self.pid = pid
        self.conn: Connection | None = mine
        _LIVE.append(mine)

    def ask(self, request: object) -> None:
        assert self.conn is not None
        self.conn.send(request)

    def answer(self) -> Any:
        assert self.conn is not None
        ok, value = self.conn.recv()
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        if self.conn is not None:
            _LIVE.remove(self.conn)
            self.conn.close()  # the worker reads EOF and leaves
            self.conn = None
            os.waitpid(self.pid, 0)


def _serve(conn: Connection, serve: Any) -> None:
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        try:
            answer: tuple[bool, Any] = (True, serve(request))
        except BaseException as exc:
            answer = (False, exc)
        conn.send(answer)


class ProcessLanes:
    """Lanes for a one-lane engine: lane 0 in this process, lane k in worker k."""

    def __init__(self, engine: VectorEngine, n: int, setup: Setup) -> None:
        self.engine = engine
        self.setup = setup
        self.n = min(n, engine.lay.n_vms)
        self.lane_of_vm = shared_zeros(0x10000, np.uint8)
        self.ids = int(engine.lay.vm_ids.max()) + 1
        """VM ids are below this: the per-VM tables below are this long."""
        self.fault_rate = np.zeros(self.ids)
        self.counts = np.zeros(self.ids, dtype=np.int64)
        self.buf = {
            k: shared_zeros(PIECE, dt)
            for k, dt in (
                ("t", np.int64),
                ("vm", np.uint16),
                ("vcpu", np.uint16),
                ("gpa", np.uint64),
                ("rows", np.int64),
            )
        }
        _share_state(engine)
        self.lane0 = _Lane0(engine)
        if setup.trim:
            ctypes.CDLL("libc.so.6").malloc_trim(0)  # free heap pages would be copied on write
        self.workers = [Worker(_Server(engine, self, k)) for k in range(1, self.n)]

    def splits(self, epoch: Any) -> bool:
        return self.n > 1 and len(epoch) >= MIN_SPLIT

    def run(self, epoch: Any) -> None:
        while len(epoch):
            piece = epoch.head(PIECE)
            self._run_piece(piece)
            epoch = epoch.tail(len(piece))

    def _run_piece(self, piece: Any) -> None:
        engine, n = self.engine, len(piece)
        for k in ("t", "vm", "vcpu", "gpa"):
            self.buf[k][:n] = getattr(piece, k)
        if piece.rows is not None:
            self.buf["rows"][:n] = piece.rows
        self._split(piece)
        seq = engine.state.sps.next_seq
        request = (n, piece.row0, piece.rows is not None, engine.state.leaves.bits is not None)
        for worker in self.workers:
            worker.ask((*request, engine.host.last_reclaim_t, seq))
        answers = [worker.answer() for worker in self.workers] if self.setup.serial else []
        answers.append(self.lane0.replay(piece, self.lane_of_vm[piece.vm], seq))
        if not self.setup.serial:
            answers += [worker.answer() for worker in self.workers]
        engine.state.sps.next_seq = max(end for _, _, end in answers)
        chunks = [chunk for chunk, _, _ in answers if chunk is not None]
        if chunks:
            rows = np.concatenate([c["row"] for c in chunks])
            order = np.argsort(rows, kind="stable")
            engine.faults.add({k: np.concatenate([c[k] for c in chunks])[order] for k in chunks[0]})
        engine.sp_removals.extend(sorted(z for _, zaps, _ in answers for z in zaps))
        # Each VM's faults per access, for the next pieces' split (faults are most of the cost).
        faults = np.bincount(rows_vm(chunks), minlength=self.ids) if chunks else 0
        seen = np.flatnonzero(self.counts)
        rate = (faults / np.maximum(self.counts, 1))[seen]
        self.fault_rate[seen] = (self.fault_rate[seen] + rate) / 2

    def _split(self, piece: Any) -> None:
        """Each VM's lane: runs of VMs by their accesses in the piece, lane 0's part smaller."""
        lay = self.engine.lay
        self.counts = np.bincount(piece.vm, minlength=self.ids)
        counts = (self.counts * (1 + FAULT_WEIGHT * self.fault_rate))[lay.vm_ids]
        mid = np.cumsum(counts) - counts / 2
        share0 = self.setup.share0
        parts = np.full(self.n, (1 - share0) / (self.n - 1))
        parts[0] = share0
        self.lane_of_vm[lay.vm_ids] = np.searchsorted(np.cumsum(parts)[:-1] * mid[-1], mid)

    def close(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []


class _Lane0:
    """Lane 0: the engine's own selector and state, its rows kept apart for the merge."""

    def __init__(self, engine: VectorEngine) -> None:
        self.engine = engine

    def replay(self, piece: Any, lanes: np.ndarray, seq: int) -> Answer:
        engine = self.engine
        sink, zaps = engine.faults, engine.sp_removals
        engine.faults, engine.sp_removals = FaultRows(), []
        try:
            return _replay_share(engine, piece, lanes, 0)
        finally:
            engine.faults, engine.sp_removals = sink, zaps


class _Server:
    """Worker k's side, on its private copy of the engine (the shared arrays aside)."""

    def __init__(self, engine: VectorEngine, lanes: ProcessLanes, k: int) -> None:
        self.engine, self.lanes, self.k = engine, lanes, k
        self.ready = False

    def __call__(self, request: tuple[int, int, bool, bool, int | None, int]) -> Answer:
        engine = self.engine
        if not self.ready:
            engine.lanes = None
            engine.selector = CandidateSelector(engine.tables, engine.state)  # fresh scratch
            self.ready = True
        n, row0, with_rows, packed, last_reclaim_t, seq = request
        buf = self.lanes.buf
        accesses = engine_module._Accesses  # the engine's epoch type
        piece = accesses(
            row0, buf["t"][:n], buf["vm"][:n], buf["vcpu"][:n], buf["gpa"][:n],
            buf["rows"][:n] if with_rows else None,
        )  # fmt: skip
        engine.host.last_reclaim_t = last_reclaim_t
        leaves = engine.state.leaves
        leaves.bits = getattr(leaves, "bits_store", None) if packed else None
        engine.faults, engine.sp_removals = FaultRows(), []
        engine.state.sps.next_seq = seq
        return _replay_share(engine, piece, self.lanes.lane_of_vm[piece.vm], self.k)


def _replay_share(engine: VectorEngine, piece: Any, lanes: np.ndarray, k: int) -> Answer:
    share = piece.of_lane(lanes, k)
    if len(share):
        engine._carried_recycled = 0
        engine._steps(share)
    faults = engine.faults
    assert isinstance(faults, FaultRows)
    chunk = faults.arrays() if faults.num_rows else None
    return chunk, list(engine.sp_removals), engine.state.sps.next_seq


def _share_state(engine: VectorEngine) -> None:
    """Move what a lane writes into shared memory, and ``Leaves.pack`` into a shared store."""
    state = engine.state
    owners = {"leaves": state.leaves, "sps": state.sps, "hits": state.hits, "caches": engine.caches}
    for owner, names in SHARED.items():
        for name in names:
            arr = getattr(owners[owner], name)
            if arr is not None:
                setattr(owners[owner], name, to_shared(arr))
    leaves = state.leaves
    store = shared_zeros((len(leaves.present) + 7) // 8, np.uint8)

    def pack() -> None:
        store[:] = np.packbits(leaves.present, bitorder="little")
        leaves.bits = store

    leaves.bits_store = store  # type: ignore[attr-defined]
    leaves.pack = pack  # type: ignore[method-assign]


# -- the benchmark --------------------------------------------------------------------------------


def _cpu(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


def _busy_s() -> float:
    """CPU seconds the whole machine has spent busy (every process), from /proc/stat."""
    with Path("/proc/stat").open() as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _digest(result: Any) -> str:
    h = hashlib.sha256()
    for k, col in sorted(result.faults.items()):
        h.update(k.encode())
        h.update(np.ascontiguousarray(col).tobytes())
    h.update(repr(result.sp_removals).encode())
    h.update(repr(result.scans).encode())
    return h.hexdigest()[:16]


def replay_once(trace: Any, batches: list[Any], lanes: int, setup: Setup) -> dict[str, Any]:
    """One replay: 1 lane, or ``lanes`` process lanes. Wall and CPU seconds, digest."""
    me, kids, t0 = _cpu(resource.RUSAGE_SELF), _cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    busy = _busy_s()
    engine = VectorEngine(trace.meta, "zap", MmuConfig(), CostModel())
    if lanes > 1:
        engine.lanes = ProcessLanes(engine, lanes, setup)  # type: ignore[assignment]
    try:
        for batch in batches:
            engine.feed(batch)
        result = engine.finish()
    finally:
        engine.close()
    cpu, worker = _cpu(resource.RUSAGE_SELF) - me, _cpu(resource.RUSAGE_CHILDREN) - kids
    return {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": cpu,
        "worker_cpu_s": worker,
        # Other processes' CPU meanwhile: a run that shared the cores says little.
        "others_cpu_s": max(0.0, _busy_s() - busy - cpu - worker),
        "digest": _digest(result),
    }


def _wait_quiet(most_s: float) -> None:
    """Wait (at most ``most_s``) for a second in which the machine was nearly idle."""
    deadline = time.monotonic() + most_s
    cores = os.cpu_count() or 1
    while time.monotonic() < deadline:
        busy = _busy_s()
        time.sleep(1.0)
        if _busy_s() - busy < QUIET * cores:
            return


def _in_fresh_process(path: Path, lanes: int, setup: Setup) -> dict[str, Any]:
    """:func:`replay_once` in a new interpreter (its heap as small as a command's at the fork)."""
    cmd = [sys.executable, __file__, str(path), "--one", str(lanes), *setup.flags()]
    out = subprocess.run(cmd, capture_output=True, check=True)
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def bench(
    path: Path, repeat: int, setup: Setup, wait: float = 0.0, *, fresh: bool = False
) -> dict[str, Any]:
    """Pairs of runs (one lane, then two process lanes) until ``repeat`` pairs ran alone.

    A pair where other processes took more than :data:`QUIET` of a run's wall time in CPU is
    kept in the counts but not in the figures (at most ``3 * repeat`` pairs are tried): on a
    shared 2-core machine, a second process's slowdown is what such a pair measures. Before
    each pair, up to ``wait`` seconds go to waiting for an idle second.
    """
    trace = open_trace(path)
    batches = [] if fresh else list(iter_batches(trace))
    pairs: list[tuple[dict[str, Any], dict[str, Any]]] = []
    quiet: list[tuple[dict[str, Any], dict[str, Any]]] = []
    while len(quiet) < repeat and len(pairs) < 3 * repeat:
        _wait_quiet(wait)
        if fresh:
            pair = (_in_fresh_process(path, 1, setup), _in_fresh_process(path, 2, setup))
        else:
            one = replay_once(trace, batches, 1, setup)
            pair = (one, replay_once(trace, batches, 2, setup))
        pairs.append(pair)
        if all(r["others_cpu_s"] <= QUIET * r["wall_s"] for r in pair):
            quiet.append(pair)
    digests = {r["digest"] for pair in pairs for r in pair}
    assert len(digests) == 1, f"the lanes changed the answers: {digests}"
    out: dict[str, Any] = {
        "trace": path.name,
        **asdict(setup),
        "fresh": fresh,
        "pairs": len(pairs),
        "quiet_pairs": len(quiet),
        "load_after": round(os.getloadavg()[0], 2),
    }
    for i, n in enumerate((1, 2)):
        runs = [pair[i] for pair in quiet]
        out[f"runs{n}"] = [
            [round(r[k], 3) for k in ("wall_s", "cpu_s", "worker_cpu_s", "others_cpu_s")]
            for r in (pair[i] for pair in pairs)
        ]
        out[f"lanes{n}"] = {
            f"{how}_{key}": round(agg(r[key] for r in runs), 3) if runs else None
            for key in ("wall_s", "cpu_s", "worker_cpu_s")
            for how, agg in (("best", min), ("median", statistics.median))
        }
    return out


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark on every trace given; one JSON line each."""
    ap = argparse.ArgumentParser(description="process lanes against one lane, in-process")
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--share0", type=float, default=0.35, help="lane 0's part of a piece")
    ap.add_argument(
        "--serial", action="store_true", help="lanes one after the other: their work, uncontended"
    )
    ap.add_argument(
        "--fresh", action="store_true", help="every run in a new process, after reading the trace"
    )
    ap.add_argument("--trim", action="store_true", help="malloc_trim before the fork")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one run, here: its JSON
    ap.add_argument("--wait", type=float, default=120.0, help="most seconds to wait for quiet")
    args = ap.parse_args(argv)
    setup = Setup(args.share0, args.serial, args.trim)
    for name in args.traces:
        with contextlib.redirect_stdout(sys.stderr):
            if args.one:
                trace = open_trace(name)
                batches = list(iter_batches(trace))
                result = replay_once(trace, batches, args.one, setup)
            else:
                result = bench(Path(name), args.repeat, setup, args.wait, fresh=args.fresh)
        print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
