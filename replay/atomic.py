"""Outputs that appear whole or not at all.

Every file or folder the tool writes is first written under a temporary name in the same folder
and renamed into place only when it is complete. An error or Ctrl-C removes the temporary copy,
so a user never finds a partial output that looks finished.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from replay.errors import OutputPathError

if TYPE_CHECKING:
    from collections.abc import Iterator


def check_output_path(path: Path, what: str = "output") -> None:
    """Fail early, with a fix, when ``path`` cannot be written."""
    parent = path.parent
    if not parent.is_dir():
        raise OutputPathError(
            f"{what} {path}: folder {parent} does not exist; create it or choose another path"
        )
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder; give a file name")
    refused = refusal_to_write_in(parent)
    if refused:
        raise OutputPathError(
            f"{what} {path}: folder {parent} is not writable ({refused}); choose another path"
        )


def refusal_to_write_in(folder: Path) -> str | None:
    """Why a new file cannot be made in ``folder``, or None if one can.

    Tried, not guessed from the permission bits: root passes every permission check, yet
    some folders (``/proc``, a read-only mount) still refuse.
    """
    try:
        fd, probe = tempfile.mkstemp(prefix=f".replay-probe-{os.getpid()}-", dir=folder)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    Path(probe).unlink()
    return None


@contextmanager
def atomic_output(path: Path, what: str = "output") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary name starts with a dot and ends in ``.partial`` so that it is plainly not a
    finished output. Works for files and for folders.
    """
    check_output_path(path, what)
    tmp = partial_name(path)
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


PARTIAL_SUFFIX = ".partial"
"""Every temporary output ends so: ``.NAME.PID.partial`` (files and folders)."""
_LEFTOVER = re.compile(r"^\.(?:.+)\.(\d+)\.partial$|^\.replay-(?:convert|probe)-(\d+)-")
"""Temporary names of this tool that carry the process id of their writer."""


def partial_name(path: Path) -> Path:
    """The temporary name of ``path`` while this process writes it: ``.NAME.PID.partial``."""
    return path.with_name(f".{path.name}.{os.getpid()}{PARTIAL_SUFFIX}")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a live process of another user
        return True
    return True


def sweep_leftovers(folder: Path) -> list[Path]:
    """Remove what killed runs of this tool left in ``folder``; return what was removed.

    A process killed outright (SIGKILL, a power cut) cannot remove its temporary outputs. Their
    names carry the writer's process id, so the next command that writes in the same folder
    recognises the ones whose writer is gone and removes them. A temporary output of a process
    that still runs (another replay writing beside this one) is left alone.
    """
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _LEFTOVER.match(entry.name)
        if match is None:
            continue
        pid = int(match.group(1) or match.group(2))
        if _alive(pid):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        except OSError:
            continue  # someone else's to remove, or already gone
        removed.append(entry)
    return removed


class OutputBusyError(OutputPathError):
    """Another process of this tool is writing the same output."""


@contextmanager
def output_lock(path: Path, what: str = "output") -> Iterator[None]:
    """Hold an exclusive lock on writing ``path`` (a file or folder) while the block runs.

    The lock is ``flock`` on the folder that holds ``path``: two commands writing into one
    folder at once are refused, not interleaved, and the kernel drops the lock when its holder
    ends, however it ends (no stale lock file is ever left behind).
    """
    import fcntl

    parent = path.parent
    try:
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise OutputPathError(
            f"{what} {path}: folder {parent} cannot be opened ({exc.strerror}); choose another path"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputBusyError(
                f"{what} {path}: another replay command is writing in {parent}; wait for it to "
                "finish or choose another path"
            ) from None
        yield
    finally:
        os.close(fd)


_RENAME_EXCHANGE = 2
"""``renameat2`` flag (linux/fs.h): swap two paths in one step."""


def exchange(a: Path, b: Path) -> bool:
    """Swap ``a`` and ``b`` (both existing) in one atomic step; False where the system cannot.

    Linux's ``renameat2(RENAME_EXCHANGE)`` makes the swap a single operation: at every moment
    each name holds either its old or its new content, so an interruption cannot leave a mix.
    """
    import ctypes
    import ctypes.util

    if sys.platform != "linux":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    result = renameat2(
        at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), ctypes.c_uint(_RENAME_EXCHANGE)
    )
    if result == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # a file system (or kernel) without the flag
    raise OSError(err, os.strerror(err), str(a))


def replace_whole(new: Path, target: Path) -> None:
    """Put folder ``new`` in place of folder ``target``, so that ``target`` is old or new, whole.

    With an atomic exchange the old content ends up at ``new``'s name and is removed there; an
    interruption during that removal leaves only a ``.partial`` folder, which
    :func:`sweep_leftovers` removes later. Where the system has no exchange, the old folder is
    first renamed aside (a ``.partial`` name of this process) and the new one renamed in: the
    gap between the two renames is the only moment ``target`` is absent, and nothing is ever
    mixed.
    """
    if not target.exists():
        new.replace(target)
        return
    if exchange(new, target):
        shutil.rmtree(new, ignore_errors=True)
        return
    aside = target.with_name(f".{target.name}.old.{os.getpid()}{PARTIAL_SUFFIX}")
    target.replace(aside)
    new.replace(target)
    shutil.rmtree(aside, ignore_errors=True)
