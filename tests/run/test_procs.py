"""Policies replayed in child processes (issue 16, ``replay.run.procs``).

Whatever the processes, the runs are those of one process, byte for byte (timings aside); an
error is the one a one-process replay meets first; a child that dies is said in one line; and
nothing is left running or writing once ``run_policies`` has returned or raised.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.errors import TraceDataError
from replay.fleet.worker import one_core_per_job
from replay.mmu import lanes
from replay.mmu.config import POLICIES, MmuConfig
from replay.mmu.engine import VectorEngine
from replay.run import driver, procs, walks
from replay.run.driver import run_policies
from replay.run.outputs import write_runs
from replay.synth import generate, list_scenarios, load_scenario
from replay.trace import open_trace
from replay.trace.reader import iter_batches
from tests.builders import write_rows
from tests.mmu.test_lanes import _outputs, many_vm_traces

if TYPE_CHECKING:
    from collections.abc import Callable

    from replay.run.records import Replay
    from replay.trace.reader import EventBatch, TraceFile
    from replay.trace.schema import TraceMeta


Split = tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]
"""The positions the calling process replays, and each child's."""


@pytest.fixture
def forked(monkeypatch: pytest.MonkeyPatch) -> list[Split]:
    """How every replay that went to child processes was split."""
    seen: list[Split] = []
    real = procs.replay_in_processes

    def spy(batches: Any, plan: procs.Plan, *hooks: Any) -> list[object]:
        seen.append((plan.local, plan.groups))
        return real(batches, plan, *hooks)

    monkeypatch.setattr(procs, "replay_in_processes", spy)
    return seen


def _small_batches(monkeypatch: pytest.MonkeyPatch, rows: int) -> None:
    """Batches of ``rows`` rows: many batches go round the ring."""
    monkeypatch.setattr(driver, "iter_batches", partial(iter_batches, batch_rows=rows))


@pytest.fixture(scope="module")
def many(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("procs") / "t.parquet"
    generate(load_scenario("many-small-vms", seed=4, accesses=6_000), path)
    return path


@pytest.fixture(scope="module")
def many_one_process(
    many: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[pytest.MonkeyPatch, int], dict[str, bytes]]:
    """``(monkeypatch, rows) -> files``: the runs of :func:`many` replayed on one thread in
    batches of ``rows`` rows, made once per batch size for the tests that compare with them
    (the replay patches nothing else, so every such test would replay it the same way)."""
    made: dict[int, dict[str, bytes]] = {}

    def get(monkeypatch: pytest.MonkeyPatch, rows: int) -> dict[str, bytes]:
        if rows not in made:
            root = tmp_path_factory.mktemp(f"one-process-{rows}")
            with monkeypatch.context() as mp:
                _small_batches(mp, rows)
                write_runs(_replay(open_trace(many), root / "w1", 1), root / "r1")
            made[rows] = _outputs(root / "r1")
        return made[rows]

    return get


def _replay(trace: TraceFile, work: Path, threads: int | None, **kw: Any) -> Replay:
    work.mkdir()
    return run_policies(trace, POLICIES, workdir=work, threads=threads, **kw)


def _no_child_left() -> None:
    assert multiprocessing.active_children() == []


@pytest.mark.parametrize(
    ("threads", "workdir", "policies", "processes"),
    [
        (2, True, POLICIES, True),
        (None, True, POLICIES, False),  # a short trace: one thread (ONE_THREAD_BELOW_ROWS)
        (8, True, ("zap", "cache"), True),
        (1, True, POLICIES, False),  # today's one-thread replay
        (2, False, POLICIES, False),  # fault rows kept in memory: policies on threads
        (3, True, ("cache",), False),  # one policy: its lanes only
        (2, True, ("none", "cache"), False),  # one walk replays both (ENGINE.md)
    ],
)
def test_the_policies_go_to_processes_only_with_threads_a_folder_and_several_policies(
    tmp_path: Path,
    many: Path,
    forked: list[Any],
    threads: int | None,
    workdir: bool,
    policies: tuple[str, ...],
    processes: bool,
) -> None:
    run_policies(
        open_trace(many),
        policies,  # type: ignore[arg-type]
        workdir=tmp_path if workdir else None,
        threads=threads,
    )
    assert bool(forked) == processes
    if processes:
        local, groups = forked[0]
        assert groups
        assert sorted([*local, *(p for group in groups for p in group)]) == list(
            range(len(policies))
        )


def test_the_default_forks_only_for_a_trace_of_enough_rows(
    tmp_path: Path, many: Path, forked: list[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``threads``, a trace shorter than ONE_THREAD_BELOW_ROWS stays on one thread;
    one as long goes to processes; ``threads`` given is obeyed either way."""
    trace = open_trace(many)
    rows = trace.num_rows
    for below, threads, forks in ((rows + 1, None, False), (rows, None, True), (rows + 1, 2, True)):
        monkeypatch.setattr(driver, "ONE_THREAD_BELOW_ROWS", below)
        forked.clear()
        _replay(trace, tmp_path / f"w{below}-{threads}", threads)
        assert bool(forked) == forks, (below, threads)
    _no_child_left()


def test_the_threads_help_says_the_short_trace_rule() -> None:
    """``replay run --help`` gives the threshold the driver uses (the CLI does not import the
    driver to build its help: the number is written out there)."""
    from typing import get_args

    from replay.cli.options import ThreadsOption

    assert f"{driver.ONE_THREAD_BELOW_ROWS:,} rows" in get_args(ThreadsOption)[1].help


def test_a_fleet_job_stays_in_its_process(tmp_path: Path, many: Path, forked: list[Any]) -> None:
    """A fleet worker's options (one core a job) keep the one-thread replay as it was."""
    options = one_core_per_job(1)
    assert options["threads"] == 1
    run_policies(open_trace(many), POLICIES, workdir=tmp_path, **options)
    assert forked == []


@pytest.mark.parametrize("scenario", list_scenarios())
@pytest.mark.parametrize("mmu", ["tdp_mmu", "shadow_direct"])
def test_every_scenario_writes_the_same_runs_in_processes(
    tmp_path: Path,
    scenario: str,
    mmu: str,
    forked: list[Any],
    monkeypatch: pytest.MonkeyPatch,
    one_thread_runs: Callable[[str, str], tuple[TraceFile, dict[str, bytes]]],
) -> None:
    """Every shipped scenario, both MMU modes, every policy, 2, 3 and 8 threads and the default
    (one process per policy, or fewer holding several), in batches of 1,500 rows: every file of
    the runs is that of a one-thread replay (tests/conftest.py's ``one_thread_runs``, shared
    with tests/mmu/test_lanes.py; it reads the trace in the default batches, so any difference
    the batches made would show here too)."""
    trace, one = one_thread_runs(scenario, mmu)
    _small_batches(monkeypatch, 1_500)
    monkeypatch.setattr(lanes, "MIN_SPLIT", 0)  # inherited by the children
    monkeypatch.setattr(driver, "ONE_THREAD_BELOW_ROWS", 0)  # the default forks here too
    for threads in (2, 3, 8, None):
        write_runs(_replay(trace, tmp_path / f"w{threads}", threads), tmp_path / f"r{threads}")
        assert _outputs(tmp_path / f"r{threads}") == one, threads
    assert len(forked) == 4
    # One child: the policies are two walks, zap's and the one of none and cache.
    assert {len(groups) for _, groups in forked} == {1}
    _no_child_left()


@pytest.mark.parametrize(
    "split",
    [  # of the walks: zap's (0), and none's and cache's (1), ENGINE.md "Shared walks"
        ((), ((0,), (1,))),  # a child per walk, this process only reads
        ((1,), ((0,),)),  # what 2 and more threads do
        ((0,), ((1,),)),
        ((), ((0, 1),)),  # one child replays every policy
    ],
)
def test_every_split_of_the_policies_writes_the_same_runs(
    tmp_path: Path,
    many: Path,
    many_one_process: Callable[[pytest.MonkeyPatch, int], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
    split: Split,
) -> None:
    one = many_one_process(monkeypatch, 700)
    _small_batches(monkeypatch, 700)
    monkeypatch.setattr(procs, "split", lambda costs, workers: split)
    write_runs(_replay(open_trace(many), tmp_path / "w", 2), tmp_path / "r")
    assert _outputs(tmp_path / "r") == one
    _no_child_left()


def test_batches_too_large_for_the_ring_go_through_the_pipe(
    tmp_path: Path,
    many: Path,
    many_one_process: Callable[[pytest.MonkeyPatch, int], dict[str, bytes]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one = many_one_process(monkeypatch, 900)
    _small_batches(monkeypatch, 900)
    monkeypatch.setattr(procs, "slot_bytes", lambda rows: 4096)  # no batch fits
    write_runs(_replay(open_trace(many), tmp_path / "w", 3), tmp_path / "r")
    assert _outputs(tmp_path / "r") == one
    _no_child_left()


@pytest.mark.parametrize("workers", [1, 2, 3, 8])
@pytest.mark.parametrize(
    "policies",
    [("zap", "none", "cache"), ("cache", "zap"), ("none", "cache"), ("cache", "none", "zap")],
)
def test_the_split_balances_the_policies(workers: int, policies: tuple[str, ...]) -> None:
    """Every policy once; at most ``workers`` groups; this process takes a least costly one."""
    local, groups = procs.split([walks.POLICY_COST[p] for p in policies], workers)
    every = [*local, *(p for group in groups for p in group)]
    assert sorted(every) == list(range(len(policies)))
    assert len(groups) + 1 == min(workers, len(policies)) or (workers == 1 and not groups)
    cost = [sum(walks.POLICY_COST[policies[p]] for p in g) for g in (local, *groups)]
    assert cost[0] == min(cost)
    if workers == 2 and sorted(policies) == ["cache", "none", "zap"]:
        assert [policies[p] for p in every[: len(local)]] != ["zap"]  # zap alone, in a child
        assert max(cost) == min(cost)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(many_vm_traces(), st.sampled_from([1, 5, 64]), st.sampled_from([2, 3]))
def test_generated_traces_give_the_same_runs_in_processes(
    tmp_path_factory: pytest.TempPathFactory,
    drawn: tuple[TraceMeta, list[dict[str, Any]], MmuConfig],
    batch_rows: int,
    threads: int,
) -> None:
    """Many VMs, frequent host events, batches down to one row: the runs of one process."""
    meta, rows, cfg = drawn
    tmp = tmp_path_factory.mktemp("gen")
    trace = open_trace(write_rows(tmp / "t.parquet", rows, meta))
    with pytest.MonkeyPatch.context() as mp:
        _small_batches(mp, batch_rows)
        mp.setattr(lanes, "MIN_SPLIT", 0)
        got = {}
        for n in (1, threads):
            try:
                replay = _replay(trace, tmp / f"w{n}", n, cfg=cfg)
            except TraceDataError as exc:  # a trace of host events only: the same refusal
                got[n] = {"error": str(exc).encode()}
                continue
            write_runs(replay, tmp / f"r{n}")
            got[n] = _outputs(tmp / f"r{n}")
    assert got[threads] == got[1]
    _no_child_left()


# -- errors ---------------------------------------------------------------------------------


class EngineBug(Exception):
    """What a failing engine raises here (a bug, not a user's mistake: no ReplayError)."""


def _failing_feed(monkeypatch: pytest.MonkeyPatch, at: dict[str, int]) -> None:
    """Make the engine of each policy in ``at`` raise on the batch starting at that row."""
    real = VectorEngine.feed

    def feed(self: VectorEngine, batch: EventBatch) -> None:
        for account in self.accounts:  # a shared walk replays several policies
            if at.get(account.policy) == batch.start_row:
                raise EngineBug(f"{account.policy} fails at row {batch.start_row}")
        real(self, batch)

    monkeypatch.setattr(VectorEngine, "feed", feed)


@pytest.mark.parametrize(
    "at",
    [
        {"cache": 1_000},
        {"cache": 1_000, "zap": 2_000},  # the earlier batch first
        {"none": 2_000, "cache": 2_000},  # at one batch, the first policy given
        {"zap": 0},
        {"cache": 5_000},  # the last batch
    ],
)
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_an_engine_error_is_the_first_a_single_process_meets(
    tmp_path: Path, many: Path, monkeypatch: pytest.MonkeyPatch, at: dict[str, int], threads: int
) -> None:
    _small_batches(monkeypatch, 1_000)
    _failing_feed(monkeypatch, at)
    first = min(at.items(), key=lambda kv: (kv[1], POLICIES.index(kv[0])))
    with pytest.raises(EngineBug) as got:
        _replay(open_trace(many), tmp_path / "w", threads)
    assert str(got.value) == f"{first[0]} fails at row {first[1]}"
    _no_child_left()


def test_a_bad_row_is_named_as_in_one_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reader's error (a row out of order, in the third batch) is the same one line, even
    when an engine fails later in the same batch's policies."""
    from tests.builders import access

    rows = [access(t * 10, vm=0, gpa=(t % 50) << 12) for t in range(300)]
    rows[250]["t_ns"] = 5
    trace = open_trace(write_rows(tmp_path / "t.parquet", rows))
    _small_batches(monkeypatch, 100)
    _failing_feed(monkeypatch, {"zap": 200})  # the batch the bad row is in: never fed
    messages = set()
    for threads in (1, 2, 3):
        with pytest.raises(TraceDataError) as got:
            _replay(trace, tmp_path / f"w{threads}", threads)
        messages.add(str(got.value))
    assert len(messages) == 1
    assert "row 250" in messages.pop()
    _no_child_left()


def test_an_engine_error_before_a_bad_row_comes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.builders import access

    rows = [access(t * 10, vm=0, gpa=(t % 50) << 12) for t in range(300)]
    rows[250]["t_ns"] = 5
    trace = open_trace(write_rows(tmp_path / "t.parquet", rows))
    _small_batches(monkeypatch, 100)
    _failing_feed(monkeypatch, {"cache": 100})
    for threads in (1, 3):
        with pytest.raises(EngineBug) as got:
            _replay(trace, tmp_path / f"w{threads}", threads)
        assert str(got.value) == "cache fails at row 100"
    _no_child_left()


def test_a_trace_without_accesses_is_refused_as_in_one_process(tmp_path: Path) -> None:
    from tests.builders import reclaim

    trace = open_trace(write_rows(tmp_path / "t.parquet", [reclaim(t) for t in range(50)]))
    for threads in (1, 2):
        with pytest.raises(TraceDataError, match="has no access events"):
            _replay(trace, tmp_path / f"w{threads}", threads)
    _no_child_left()


def test_an_error_in_finish_is_raised(
    tmp_path: Path, many: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = VectorEngine.finish

    def finish(self: VectorEngine) -> Any:
        if self.policy in ("none", "cache"):
            raise OSError(28, f"No space left on device ({self.policy})")
        return real(self)

    monkeypatch.setattr(VectorEngine, "finish", finish)
    with pytest.raises(OSError, match=r"\(none\)") as got:
        _replay(open_trace(many), tmp_path / "w", 3)
    assert got.value.errno == 28
    _no_child_left()


def test_a_child_killed_by_a_signal_is_said_in_one_line(
    tmp_path: Path, many: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No hang: the parent sees the child end and says which policy and how."""
    real = VectorEngine.feed
    here = os.getpid()

    def feed(self: VectorEngine, batch: EventBatch) -> None:
        if os.getpid() != here and self.policy == "zap" and batch.start_row >= 2_000:
            os.kill(os.getpid(), signal.SIGKILL)  # in the child only
        real(self, batch)

    _small_batches(monkeypatch, 1_000)
    monkeypatch.setattr(VectorEngine, "feed", feed)
    t0 = time.monotonic()
    with pytest.raises(procs.ChildDiedError) as got:
        _replay(open_trace(many), tmp_path / "w", 3)
    assert time.monotonic() - t0 < 30
    message = str(got.value)
    assert "\n" not in message
    assert "policy zap was killed by SIGKILL" in message
    _no_child_left()


def test_an_interrupt_stops_every_child_and_nothing_writes_after(
    tmp_path: Path, many: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C in the parent (here: raised by the progress callback on the third batch): every
    child is killed and reaped before the exception goes on, so the folder stays as it is."""
    _small_batches(monkeypatch, 500)
    calls = []

    def progress(done: int, total: int) -> None:
        calls.append(done)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(lanes, "MIN_SPLIT", 0)  # 8 threads: lanes in every engine, here too
    threads_before = set(threading.enumerate())  # other tests' may end meanwhile
    with pytest.raises(KeyboardInterrupt):
        _replay(open_trace(many), tmp_path / "w", 8, progress=progress)
    _no_child_left()
    gc.collect()  # the reader's generator, dropped with the frame
    assert set(threading.enumerate()) <= threads_before  # the lanes and the reader stopped
    listing = sorted((p.name, p.stat().st_size) for p in (tmp_path / "w").iterdir())
    time.sleep(0.3)
    assert sorted((p.name, p.stat().st_size) for p in (tmp_path / "w").iterdir()) == listing


def test_a_child_dies_with_its_parent(tmp_path: Path, many: Path) -> None:
    """A parent killed outright (SIGKILL: no clean-up runs) takes its children with it."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the parent-to-be: starts a replay that tells its children's pids, then waits
        os.close(read)
        code = 1
        try:
            real = procs._Parent.start

            def start(self: procs._Parent) -> None:
                real(self)
                pids = ",".join(str(c.process.pid) for c in self.children)
                os.write(write, pids.encode() + b"\n")
                time.sleep(60)

            procs._Parent.start = start  # type: ignore[method-assign]
            procs.split = lambda costs, workers: ((), ((0,), (1,)))  # a child per walk
            _replay(open_trace(many), tmp_path / "w", 3)
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read) as fh:
        children = [int(p) for p in fh.readline().split(",")]
    assert len(children) == 2  # zap's walk, and none's and cache's
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(_alive(c) for c in children)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
