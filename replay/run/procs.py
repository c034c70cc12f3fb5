"""Policies replayed in child processes that share one read of the trace (issue 16).

The policies of one replay share the trace and nothing else, but on threads they share the
GIL too: an engine is many short numpy calls, so two engines on two threads take about the
time of one after the other. :func:`replay_in_processes` runs them in child processes instead:

* the parent reads, decodes and checks the trace once (its reader thread reading ahead as in a
  one-process replay), counts what does not depend on the policy, and hands every batch to the
  children through a :class:`~replay.run.ring.BatchRing` in shared memory;
* each child replays its group of policies (a *unit* each, made in the child by the caller's
  ``make_unit``), writing its fault files as in a one-process replay, and sends back what the
  parent needs to write the runs (pickled: a few hundred kilobytes);
* a child acknowledges a batch as soon as it has copied it out, so the parent stays at most
  :data:`SLOTS` batches ahead of the slowest child and memory stays bounded.

Start method: fork. The children are forked before the parent starts its reader thread or
any fault writer, so no thread of this package is running at fork time. Threads that may be
running are other libraries': numpy's OpenBLAS workers and Arrow's jemalloc background thread
(both register fork handlers that leave the child consistent) and, when stderr is a terminal,
the progress bar's refresh thread; a child never touches the console, stdin or stdout (it
reports through its pipe only), so a lock that thread held at fork time is never taken in the
child. Fork costs milliseconds where spawn and forkserver start an interpreter and import
numpy and pyarrow again (about 0.3 s a child, on the critical path); and a forked child
inherits the ring's descriptor and the caller's ``make_unit`` without pickling either.

Errors: each failure is keyed by where a one-process replay would have met it (the batch, then
the reader before the engines, then the policies in the order given), and the parent raises
the first by that order once every child has stopped: the same one line as ``--threads 1``.
A child killed by a signal gives a :class:`ChildDiedError` saying so, never a hang.

Signals: the children ignore SIGINT and SIGTERM (Ctrl-C reaches the whole process group, a
service manager's SIGTERM may too; the parent decides) and die with the parent
(``PR_SET_PDEATHSIG``). Whatever ends the parent's part early (Ctrl-C,
SIGTERM, an error), every child still running is killed and reaped before the exception goes
on, so nothing writes into the caller's folder after this function has returned or raised.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from replay.errors import ReplayError
from replay.run.ring import BatchRing, SlotLayout, slot_bytes

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from replay.trace.reader import EventBatch

SLOTS = 3
"""Batches in the ring: how far the parent may read ahead of the slowest child."""

LAST = sys.maxsize
"""The batch index of what happens after the last batch (the end checks, the engines' finish)."""

READ, FEED, END_CHECK, FINISH, CRASH = range(5)
"""Stages of a failure's key, in the order a one-process replay meets them at one batch."""

Groups = tuple[tuple[int, ...], ...]
"""Policy positions, a group per child process."""

Key = tuple[int, int, int]
"""(batch, stage, policy position): a failure's place in a one-process replay."""


class Unit(Protocol):
    """One policy's replay in a child: fed every batch, then finished."""

    def feed(self, batch: EventBatch) -> None:
        """Replay a batch."""

    def finish(self) -> object:
        """End the replay; return what goes back to the parent (picklable)."""

    def close(self) -> None:
        """Stop whatever threads the unit runs (a replay this process gives up)."""


class ChildDiedError(ReplayError):
    """A child process of the replay ended without a word (killed by a signal, or crashed)."""


@dataclass(frozen=True)
class Plan:
    """What the children replay: groups of policy positions, one group a process."""

    groups: Groups
    names: tuple[str, ...]
    """Each position's name (a policy), for messages."""
    make_unit: Callable[[int], Unit]
    """Called in the child, once per position of its group, before the first batch."""
    batch_rows: int
    """The most rows a batch may hold (sizes the ring's slots)."""
    local: tuple[int, ...] = ()
    """Positions replayed in the calling process, between handing out one batch and the next."""


@dataclass
class _Failure:
    key: Key
    error: BaseException


@dataclass
class _Child:
    group: tuple[int, ...]
    process: Any
    conn: Any
    acked: int = -1
    """The last batch the child has copied out of the ring."""
    outcome: str | None = None
    """``done``, ``stopped``, ``failed`` or ``crashed`` once it has ended."""
    results: list[object] = field(default_factory=list)


def replay_in_processes(
    batches: Iterable[EventBatch],
    plan: Plan,
    sent: Callable[[EventBatch], None],
    end_check: Callable[[], None],
) -> list[object]:
    """Feed ``batches`` to the plan's children; return every position's ``finish`` result.

    An error raised by ``batches`` is the reader's (no engine has seen that batch). ``sent``
    is called with each batch once the children have it (before this process replays it),
    ``end_check`` once the last batch is sent.

    Raises
    ------
    ReplayError, OSError, Exception
        The first error a one-process replay would have met (see the module's text).
    ChildDiedError
        A child ended without reporting (a signal killed it), and nothing came first.
    """
    run = _Parent(plan, BatchRing(SLOTS, slot_bytes(plan.batch_rows)))
    try:
        run.start()
        run.stream(batches, sent)
        if not run.failures:
            try:
                end_check()
            except Exception as exc:
                run.failures.append(_Failure((LAST, END_CHECK, 0), exc))
        for child in run.children:
            run.send(child, ("stop",) if run.failures else ("end",))
        run.finish_local()
        run.collect(lambda c: c.outcome is not None, until_failure=False)
        if run.failures:
            raise min(run.failures, key=lambda f: f.key).error
    except BaseException:
        run.stop(kill=True)
        raise
    finally:
        for _, unit in run.local:
            unit.close()
        run.ring.close()
    run.stop(kill=False)
    out: list[object] = [None] * len(plan.names)
    for pos, result in run.results.items():
        out[pos] = result
    for child in run.children:
        for pos, result in zip(child.group, child.results, strict=True):
            out[pos] = result
    return out


def _has_copied(child: _Child, upto: int) -> bool:
    return child.acked >= upto


class _Parent:
    """The parent's side: the children, the ring they read, and the failures reported."""

    def __init__(self, plan: Plan, ring: BatchRing) -> None:
        self.plan = plan
        self.ring = ring
        self.children: list[_Child] = []
        self.failures: list[_Failure] = []
        self.local: list[tuple[int, Unit]] = []
        """This process's own units (``plan.local``), made once the children are forked."""
        self.results: dict[int, object] = {}
        """Their results, by position."""

    def start(self) -> None:
        """Fork a child per group, signals held so that none lands between fork and handlers."""
        import multiprocessing as mp

        ctx = mp.get_context("fork")
        parent_pid = os.getpid()
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        try:
            for group in self.plan.groups:
                mine, theirs = ctx.Pipe(duplex=True)
                others = [c.conn for c in self.children] + [mine]
                process = ctx.Process(
                    target=_child_main,
                    args=(self.plan, group, self.ring, theirs, others, (parent_pid, old)),
                    name=f"replay-{self.names(group)}",
                    daemon=True,
                )
                process.start()
                theirs.close()
                self.children.append(_Child(group, process, mine))
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for pos in self.plan.local:
            try:
                self.local.append((pos, self.plan.make_unit(pos)))
            except Exception as exc:
                self.failures.append(_Failure((-1, FEED, pos), exc))
                return

    def feed_local(self, k: int, batch: EventBatch) -> None:
        """Replay batch ``k`` on this process's units (after the children were sent it)."""
        for pos, unit in self.local:
            try:
                unit.feed(batch)
            except Exception as exc:
                self.failures.append(_Failure((k, FEED, pos), exc))
                return

    def finish_local(self) -> None:
        """Finish this process's units, if nothing failed (the children finish meanwhile)."""
        for pos, unit in self.local:
            if self.failures:
                return
            try:
                self.results[pos] = unit.finish()
            except Exception as exc:
                self.failures.append(_Failure((LAST, FINISH, pos), exc))

    def names(self, group: tuple[int, ...]) -> str:
        return ",".join(self.plan.names[p] for p in group)

    def stream(self, batches: Iterable[EventBatch], sent: Callable[[EventBatch], None]) -> None:
        """Send every batch to the children through the ring, until the end or a failure."""
        k = 0
        it = iter(batches)
        while not self.failures:
            try:
                batch = next(it)
            except StopIteration:
                return
            except Exception as exc:  # the reader's: before any engine saw this batch
                self.failures.append(_Failure((k, READ, 0), exc))
                return
            if len(batch):
                # The slot's last batch, k - SLOTS, must be copied out by every child first.
                self.collect(partial(_has_copied, upto=k - SLOTS), until_failure=True)
                if self.failures:
                    return
                layout = self.ring.put(k % SLOTS, batch)
                message = ("batch", k, layout if layout is not None else batch)
                for child in self.children:
                    self.send(child, message)
                sent(batch)
                self.feed_local(k, batch)
                k += 1
            else:
                sent(batch)

    def collect(self, ready: Callable[[_Child], bool], *, until_failure: bool) -> None:
        """Take the children's messages until ``ready`` holds for each one still running.

        ``until_failure``: return as soon as a failure is known (the stream stops there).
        """
        from multiprocessing.connection import wait

        while not (until_failure and self.failures):
            live = [c for c in self.children if c.outcome is None]
            if all(ready(c) for c in live):
                return
            by_handle: dict[Any, _Child] = {}
            for c in live:
                by_handle[c.conn] = by_handle[c.process.sentinel] = c
            for handle in wait(list(by_handle)):
                child = by_handle[handle]
                self._take_messages(child)
                if handle is child.process.sentinel:
                    self._ended(child)

    def send(self, child: _Child, message: tuple[Any, ...]) -> None:
        """Send ``message`` to ``child`` if it is still running (it may end at any time)."""
        if child.outcome is not None:
            return
        try:
            child.conn.send(message)
        except OSError:  # it has ended (a broken pipe): what it said says why
            child.process.join(timeout=5)
            self._ended(child)

    def _ended(self, child: _Child) -> None:
        """The child has ended: its last messages, or a crash if it said nothing."""
        self._take_messages(child)
        if child.outcome is None:
            child.outcome = "crashed"
            self.failures.append(self._crash(child))

    def _take_messages(self, child: _Child) -> None:
        """Every message the child has sent so far."""
        try:
            while child.outcome is None and child.conn.poll():
                kind, *rest = child.conn.recv()
                if kind == "ack":
                    child.acked = rest[0]
                elif kind == "failed":
                    child.outcome = "failed"
                    self.failures.append(_Failure(rest[0], rest[1]))
                else:  # done or stopped
                    child.outcome = kind
                    child.results = rest[0] if rest else []
        except (EOFError, OSError):
            return  # it has ended: its sentinel says how

    def _crash(self, child: _Child) -> _Failure:
        child.process.join(timeout=5)
        code = child.process.exitcode
        how = (
            f"was killed by {signal.Signals(-code).name}"
            if code is not None and code < 0
            else f"ended (exit status {code}) without reporting"
        )
        error = ChildDiedError(
            f"the process replaying policy {self.names(child.group)} {how} (out of memory?); "
            "no run was written: run again, or with --threads 1 to replay in one process"
        )
        return _Failure((LAST, CRASH, min(child.group)), error)

    def stop(self, *, kill: bool) -> None:
        """Reap every child, killing those still running if ``kill`` (or slow to end)."""
        for child in self.children:
            if kill and child.process.is_alive():
                child.process.kill()
        for child in self.children:
            child.process.join(timeout=None if kill else 10)
            if child.process.is_alive():
                child.process.kill()
                child.process.join()
            child.conn.close()


def split(costs: Sequence[float], workers: int) -> tuple[tuple[int, ...], Groups]:
    """Positions ``0..len(costs)-1``: those this process replays, and each child's.

    At most ``workers`` groups, balanced by ``costs`` (the costliest first, each to the least
    loaded group). This process, which also reads the trace, takes the least costly group, of
    the most positions if several tie: they are fed the batches it decoded, with no copy, and
    there is one process less (measured: faster, and less memory, than a child for every
    group; scripts/PERFORMANCE.md).
    """
    k = max(1, min(len(costs), workers))
    load = [0.0] * k
    groups: list[list[int]] = [[] for _ in range(k)]
    for pos in sorted(range(len(costs)), key=lambda p: -costs[p]):
        least = load.index(min(load))
        groups[least].append(pos)
        load[least] += costs[pos]
    mine = min(range(k), key=lambda g: (load[g], -len(groups[g]), g))
    local = tuple(sorted(groups.pop(mine)))
    return local, tuple(tuple(sorted(g)) for g in groups)


def _child_main(
    plan: Plan,
    group: tuple[int, ...],
    ring: BatchRing,
    conn: Any,
    inherited: list[Any],
    parent: tuple[int, set[signal.Signals]],
) -> None:
    """The child: replay the group's policies on the batches the parent sends; never returns."""
    parent_pid, mask = parent
    # Ctrl-C reaches the whole process group, and a service manager's SIGTERM may too: the
    # parent alone decides, and kills its children whatever ends it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _die_with(parent_pid)
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for other in inherited:
        other.close()  # the parent's ends: a closed pipe then means the parent is gone
    ring.forget_mapping()
    code = 1
    try:
        code = _replay_group(plan, group, ring, conn)
    except BaseException:  # the parent is told (a pipe closed by exit); nothing may escape
        code = 1
    finally:
        os._exit(code)  # no atexit handler, no finaliser of the parent's objects


def _replay_group(plan: Plan, group: tuple[int, ...], ring: BatchRing, conn: Any) -> int:
    """The child's loop; its exit status."""
    units: list[Unit] = []
    for pos in group:
        try:
            units.append(plan.make_unit(pos))
        except Exception as exc:
            return _fail(conn, (-1, FEED, pos), exc)
    while True:
        kind, *rest = conn.recv()
        if kind == "batch":
            k, layout = rest
            batch = ring.take(layout) if isinstance(layout, SlotLayout) else layout
            conn.send(("ack", k))
            for pos, unit in zip(group, units, strict=True):
                try:
                    unit.feed(batch)
                except Exception as exc:
                    return _fail(conn, (k, FEED, pos), exc)
            del batch
        elif kind == "end":
            results = []
            for pos, unit in zip(group, units, strict=True):
                try:
                    results.append(unit.finish())
                except Exception as exc:
                    return _fail(conn, (LAST, FINISH, pos), exc)
            conn.send(("done", results))
            return 0
        else:
            conn.send(("stopped",))
            return 0


def _fail(conn: Any, key: Key, exc: Exception) -> int:
    """Tell the parent (a bug's traceback as a note, shown with ``--debug``); exit status 1."""
    import pickle

    if not isinstance(exc, ReplayError):  # a bug: where it happened, for --debug
        exc.add_note("".join(traceback.format_exception(exc)).rstrip())
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:  # an exception that does not travel: its type and message do
        exc = RuntimeError(f"{type(exc).__name__}: {exc}")
    conn.send(("failed", key, exc))
    return 1


def _die_with(parent_pid: int) -> None:
    """Be killed when the parent dies (Linux), whatever kills it (SIGKILL included)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: a closed pipe ends the child instead
        pass
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(1)
