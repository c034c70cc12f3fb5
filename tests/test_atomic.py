from __future__ import annotations

from pathlib import Path

import pytest

from replay.atomic import (
    OutputBusyError,
    atomic_output,
    exchange,
    output_lock,
    replace_whole,
    sweep_leftovers,
)


def test_folder_output_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with atomic_output(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("x")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "x"


def test_failed_folder_output_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "run"

    def write_half() -> None:
        with atomic_output(target) as tmp:
            tmp.mkdir()
            (tmp / "a.txt").write_text("x")
            raise ValueError("half")

    with pytest.raises(ValueError, match="half"):
        write_half()
    assert list(tmp_path.iterdir()) == []


def _dead_pid() -> int:
    """A process id that is not running: a child that has exited and been reaped."""
    import subprocess
    import sys

    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(child.stdout)


def test_leftovers_of_dead_writers_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    """Issue 12 item 13: SIGKILL leaves ``.NAME.PID.partial`` and ``.replay-convert-*`` behind,
    and nothing ever removed them."""
    import os

    dead = _dead_pid()
    stale_file = tmp_path / f".t.parquet.{dead}.partial"
    stale_file.write_text("half")
    stale_dir = tmp_path / f".runs.{dead}.partial"
    (stale_dir / "zap").mkdir(parents=True)
    stale_spool = tmp_path / f".replay-convert-{dead}-abc123"
    stale_spool.mkdir()
    mine = tmp_path / f".t.parquet.{os.getpid()}.partial"
    mine.write_text("being written")
    user_file = tmp_path / "notes.partial"
    user_file.write_text("not ours")
    removed = sweep_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == sorted(
        [stale_file.name, stale_dir.name, stale_spool.name]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, user_file.name])


def test_a_second_writer_of_one_folder_is_refused(tmp_path: Path) -> None:
    """Issue 12 item 2: two replay runs into one -o both said "wrote"."""
    target = tmp_path / "runs"

    def second_writer() -> None:
        with output_lock(target, "runs"):
            pass

    with output_lock(target, "runs"), pytest.raises(OutputBusyError, match="another replay"):
        second_writer()
    with output_lock(target, "runs"):  # released when the holder is done
        pass


def test_replace_whole_swaps_folders_in_one_step(tmp_path: Path) -> None:
    old, new = tmp_path / "runs", tmp_path / ".runs.1.partial"
    (old / "zap").mkdir(parents=True)
    (old / "none").mkdir()
    (new / "cache").mkdir(parents=True)
    replace_whole(new, old)
    assert [p.name for p in old.iterdir()] == ["cache"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]


def test_exchange_is_atomic_where_linux_offers_it(tmp_path: Path) -> None:
    import sys

    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    (a / "from-a").touch()
    b.mkdir()
    (b / "from-b").touch()
    swapped = exchange(a, b)
    if sys.platform == "linux":
        assert swapped  # tmp_path is on a local file system here
    if swapped:
        assert [p.name for p in a.iterdir()] == ["from-b"]
        assert [p.name for p in b.iterdir()] == ["from-a"]
