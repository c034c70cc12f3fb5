from __future__ import annotations

import errno
from pathlib import Path

import pytest

from replay.atomic import (
    DiskFullError,
    OutputBusyError,
    atomic_output,
    exchange,
    output_lock,
    replace_whole,
    sweep_leftovers,
)
from replay.errors import OutputPathError


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


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        OSError(errno.EDQUOT, "Disk quota exceeded"),
        OSError(errno.EFBIG, "File too large"),
        OSError(errno.EROFS, "Read-only file system"),
        OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"),
    ],
    ids=["ENOSPC", "EDQUOT", "EFBIG", "EROFS", "pyarrow"],
)
def test_a_full_disk_names_the_output_and_leaves_nothing(tmp_path: Path, error: OSError) -> None:
    target = tmp_path / "t.parquet"

    def write() -> None:
        with atomic_output(target, "trace") as tmp:
            tmp.write_bytes(b"half")
            raise error

    with pytest.raises(DiskFullError, match=r"t\.parquet could not be written \(the ") as info:
        write()
    assert "free some space or choose another path" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_other_write_errors_pass_through(tmp_path: Path) -> None:
    def write() -> None:
        with atomic_output(tmp_path / "t") as tmp:
            tmp.write_bytes(b"half")
            raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        write()
    assert list(tmp_path.iterdir()) == []


def test_without_force_an_output_that_appeared_meanwhile_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"

    def write() -> None:
        with atomic_output(target, "trace", force=False) as tmp:
            tmp.write_bytes(b"mine")
            target.write_bytes(b"theirs")  # another command, between the check and the end

    with pytest.raises(OutputPathError, match="appeared while this command wrote it"):
        write()
    assert target.read_bytes() == b"theirs"
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_without_force_a_new_output_is_linked_into_place(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    with atomic_output(target, "trace", force=False) as tmp:
        tmp.write_bytes(b"mine")
    assert target.read_bytes() == b"mine"
    assert target.stat().st_nlink == 1, "the temporary name is gone"
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def test_with_force_an_existing_output_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "t.parquet"
    target.write_bytes(b"old")
    with atomic_output(target, "trace", force=True) as tmp:
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"


def test_the_lock_is_per_folder_and_a_folder_made_for_it_goes_again(tmp_path: Path) -> None:
    a, b = tmp_path / "runs" / "a", tmp_path / "runs" / "b"
    a.parent.mkdir()
    with output_lock(a, "runs") as made_a, output_lock(b, "runs") as made_b:
        assert made_a, "made for the lock"
        assert made_b, "two folders beside each other do not meet"
        assert a.is_dir()
        assert b.is_dir()
        (b / "zap").mkdir()
    assert not a.exists(), "made for the lock, still empty: removed"
    assert b.is_dir(), "something was put in it: kept"
