"""The runs folder: one set of runs, replaced as a whole, written by one command at a time.

Issue 12 items 1 and 2. The swap is interrupted in-process at every step of the procedure, and
the folder must hold the old set or the new one, whole, each time.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

import pytest

import replay.atomic as atomic
import replay.run.outputs as outputs
from replay.atomic import OutputBusyError, lock_folder
from replay.errors import OutputPathError
from replay.run.driver import run_policies
from replay.run.folder import runs_folder
from replay.run.outputs import write_runs
from replay.synth import generate, load_scenario
from replay.trace import open_trace

if TYPE_CHECKING:
    from pathlib import Path

    from replay.mmu.config import Policy
    from replay.run.records import Replay

POLICIES: tuple[Policy, ...] = ("zap", "none", "cache")


@pytest.fixture(scope="module")
def replays(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Replay]:
    """Replays of one small trace at two bucket widths: the old set and the new one."""
    path = tmp_path_factory.mktemp("t") / "quick.parquet"
    generate(load_scenario("quick", accesses=5_000), path)
    return {
        "old": run_policies(open_trace(path), POLICIES, bucket_ns=50_000_000),
        "new": run_policies(open_trace(path), POLICIES, bucket_ns=100_000_000),
    }


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its content."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def bucket_widths(folder: Path) -> set[int]:
    return {
        json.loads((folder / p / "summary.json").read_text())["config"]["bucket_ns"]
        for p in POLICIES
    }


class Stop(KeyboardInterrupt):
    """The interruption the tests inject (a Ctrl-C at a chosen moment)."""


MOMENTS = [
    "write zap",
    "write none",
    "write cache",
    "before the exchange",
    "after the exchange",
    "removing the old set",
]


def interrupt_at(moment: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raise :class:`Stop` at ``moment`` of write_runs' procedure."""
    real_write_run, real_exchange, real_rmtree = outputs.write_run, atomic.exchange, shutil.rmtree

    def write_run(replay: Replay, run: Any, folder: Path) -> dict[str, Any]:
        if moment == f"write {run.policy}":
            raise Stop
        return real_write_run(replay, run, folder)

    def exchange(a: Path, b: Path) -> bool:
        if moment == "before the exchange":
            raise Stop
        done = real_exchange(a, b)
        if moment == "after the exchange":
            raise Stop
        return done

    calls = []

    def rmtree(path: Any, *args: Any, **kwargs: Any) -> None:
        calls.append(path)
        if moment == "removing the old set" and len(calls) == 1:
            # Half the old set removed, then the interruption.
            real_rmtree(next(p for p in path.iterdir() if p.is_dir()))
            raise Stop
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(outputs, "write_run", write_run)
    monkeypatch.setattr(atomic, "exchange", exchange)
    monkeypatch.setattr(shutil, "rmtree", rmtree)


@pytest.mark.parametrize("moment", MOMENTS)
def test_an_interrupted_force_leaves_the_old_set_or_the_new_one(
    replays: dict[str, Replay], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    runs = tmp_path / "runs"
    write_runs(replays["old"], runs)
    (runs / "report.html").write_text("the old set's report")
    old = snapshot(runs)
    interrupt_at(moment, monkeypatch)
    with pytest.raises(Stop):
        write_runs(replays["new"], runs, force=True)
    monkeypatch.undo()
    if snapshot(runs) != old:
        assert sorted(p.name for p in runs.iterdir()) == sorted(POLICIES), "not the new set"
        assert bucket_widths(runs) == {100_000_000}
    if moment.startswith(("write", "before")):
        assert snapshot(runs) == old
    else:
        assert bucket_widths(runs) == {100_000_000}, "the exchange is done: the new set"
    assert [p.name for p in tmp_path.iterdir()] == ["runs"], "a temporary folder was left"


@pytest.mark.parametrize("moment", MOMENTS[:4])
def test_an_interrupted_first_write_leaves_no_folder(
    replays: dict[str, Replay], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    interrupt_at(moment, monkeypatch)
    with pytest.raises(Stop):
        write_runs(replays["new"], tmp_path / "runs")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == [], "the folder made for the lock is removed again"


def test_a_folder_that_is_not_empty_needs_force(replays: dict[str, Replay], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    write_runs(replays["new"], runs)  # an empty folder is taken as it is
    with pytest.raises(OutputPathError, match=r"holds cache/, none/, zap/; pass --force"):
        write_runs(replays["old"], runs)
    assert bucket_widths(runs) == {100_000_000}


def test_force_replaces_only_a_set_of_runs(replays: dict[str, Replay], tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    write_runs(replays["old"], runs)
    (runs / "my-notes.txt").write_text("mine")
    before = snapshot(runs)
    with pytest.raises(OutputPathError, match=r"holds my-notes\.txt, which is not part"):
        write_runs(replays["new"], runs, force=True)
    assert snapshot(runs) == before


def test_force_replaces_the_old_set_and_its_report(
    replays: dict[str, Replay], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    write_runs(replays["old"], runs)
    (runs / "report.html").write_text("old")
    (runs / "report-faults.png").write_bytes(b"old")
    write_runs(replays["new"], runs, force=True)
    assert sorted(p.name for p in runs.iterdir()) == sorted(POLICIES)
    assert bucket_widths(runs) == {100_000_000}
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]


def test_a_second_command_is_refused_before_during_and_after_the_swap(
    replays: dict[str, Replay], tmp_path: Path
) -> None:
    runs = tmp_path / "runs"
    write_runs(replays["old"], runs)
    with runs_folder(runs, force=True) as folder:
        with pytest.raises(OutputBusyError, match="another replay command"):
            write_runs(replays["new"], runs, force=True)
        for run in replays["new"].runs:
            outputs.write_run(replays["new"], run, folder.staging / run.policy)
        folder.put_in_place()
        # The name now leads to the staging folder's inode, which this command holds too.
        with pytest.raises(OutputBusyError, match="another replay command"):
            write_runs(replays["new"], runs, force=True)
    write_runs(replays["old"], runs, force=True)  # released once the holder is done
    assert bucket_widths(runs) == {50_000_000}


def test_a_folder_swapped_while_it_is_locked_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B opened DIR just before A's exchange and locks it just after: B holds the old inode."""
    import fcntl

    target, other = tmp_path / "runs", tmp_path / ".runs.1.partial"
    target.mkdir()
    other.mkdir()
    real_flock = fcntl.flock

    def flock(fd: int, op: int) -> None:
        atomic.exchange(other, target)  # A's swap, between B's open and B's flock
        real_flock(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    with pytest.raises(OutputBusyError):
        lock_folder(target, "runs folder")


def test_leftovers_of_a_killed_run_are_swept(replays: dict[str, Replay], tmp_path: Path) -> None:
    dead = 2**22 + 12_345  # above any pid_max this machine uses: no such process
    left = tmp_path / f".runs.{dead}.partial"
    (left / "zap").mkdir(parents=True)
    with runs_folder(tmp_path / "runs") as folder:
        assert folder.swept == [left]
    assert not left.exists()
