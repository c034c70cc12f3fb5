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
from contextlib import contextmanager, suppress
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
def atomic_output(path: Path, what: str = "output", *, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; put it in place as ``path`` when the block succeeds.

    The temporary name starts with a dot and ends in ``.partial`` so that it is plainly not a
    finished output. Works for files and for folders. With ``force`` the finished output
    replaces whatever ``path`` holds; without it, a file is linked to its name, which fails if
    the name appeared meanwhile (another command writing the same name), so an output that
    exists is never replaced without ``--force``, race or not. A full disk (or quota, file size
    limit, read-only file system) while the block writes is an :class:`OutputPathError` naming
    ``path``.
    """
    check_output_path(path, what)
    tmp = partial_name(path)
    try:
        try:
            yield tmp
        except OSError as exc:
            raise_if_disk_full(exc, path, what)
            raise
        put_in_place(tmp, path, what, force=force)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def put_in_place(tmp: Path, path: Path, what: str, *, force: bool) -> None:
    """Rename the finished ``tmp`` to ``path``; without ``force``, never over an existing one."""
    if force or tmp.is_dir():
        tmp.replace(path)  # a folder cannot be linked; rename(2) refuses a non-empty one
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise OutputPathError(
            f"{what} {path} appeared while this command wrote it (another command writing the "
            "same name?); pass --force to replace it or choose another path"
        ) from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        # A file system without hard links: an exclusive create stands in for the link.
        with path.open("xb"):
            pass
        tmp.replace(path)
        return
    tmp.unlink()


DISK_FULL = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is full",
    errno.EFBIG: "the file size limit is reached (or the disk is full)",
    errno.EROFS: "the file system is read-only",
}
"""The errors of a write that the user fixes by making room or writing elsewhere."""


def disk_full_reason(exc: BaseException) -> str | None:
    """Why a write failed for want of room, or None if ``exc`` is not such a failure.

    pyarrow raises an OSError whose ``errno`` may be None; its text then says what happened.
    """
    if not isinstance(exc, OSError):
        return None
    if exc.errno in DISK_FULL:
        return f"{DISK_FULL[exc.errno]}: {os.strerror(exc.errno)}"
    text = str(exc)
    for code, reason in DISK_FULL.items():
        if os.strerror(code) in text:
            return f"{reason}: {os.strerror(code)}"
    return None


def raise_if_disk_full(exc: BaseException, path: Path, what: str = "output") -> None:
    """Raise :class:`DiskFullError` naming ``path`` if ``exc`` is a write that found no room."""
    reason = disk_full_reason(exc)
    if reason is not None:
        raise DiskFullError(path, what, reason) from None


class DiskFullError(OutputPathError):
    """An output did not fit: a full disk or quota, a file size limit, a read-only mount."""

    def __init__(self, path: Path, what: str, reason: str) -> None:
        self.reason = reason
        super().__init__(
            f"{what} {path} could not be written ({reason}); nothing was left behind: free "
            "some space or choose another path"
        )


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
def output_lock(folder: Path, what: str = "output") -> Iterator[bool]:
    """Hold an exclusive lock on the output folder ``folder`` while the block runs.

    The lock is ``flock`` on ``folder`` itself, so two commands writing the same folder are
    refused, not interleaved, while two writing ``runs/a`` and ``runs/b`` do not meet. A
    missing ``folder`` is created empty to carry the lock and removed again on the way out if
    it is still empty (the command failed before anything was put in it); yields whether it
    was created. The kernel drops the lock when its holder ends, however it ends: no stale lock
    file is ever left behind.

    A folder replaced by :func:`replace_whole` is a new inode under the old name: the holder
    locks the new folder (:func:`lock_folder`) before the swap, and a command that opened the
    name just before the swap finds, once it holds its lock, that the name no longer leads to
    the inode it locked, and is refused too.
    """
    created = False
    if not folder.exists():
        try:
            folder.mkdir()
        except FileExistsError:
            pass  # made by another command meanwhile: the lock below decides
        except OSError as exc:
            raise OutputPathError(
                f"{what} {folder} cannot be created ({exc.strerror}); choose another path"
            ) from None
        else:
            created = True
    fd = lock_folder(folder, what)
    try:
        yield created
    finally:
        try:
            if created:
                with suppress(OSError):
                    folder.rmdir()  # only if still empty: the command put nothing in it
        finally:
            os.close(fd)


def lock_folder(folder: Path, what: str = "output") -> int:
    """Lock ``folder`` (exclusive, not waiting); return the descriptor that holds the lock.

    The lock lasts until the descriptor is closed (or the process ends).

    Raises
    ------
    OutputBusyError
        Another process holds the lock, or ``folder`` was replaced while it was being locked.
    """
    import fcntl

    busy = OutputBusyError(
        f"{what} {folder}: another replay command is writing it; wait for it to finish or "
        "choose another path"
    )
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise OutputPathError(
            f"{what} {folder} cannot be opened ({exc.strerror}); choose another path"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # The name may have been swapped to another folder between open and flock.
        held, named = os.fstat(fd), folder.stat()
        if (held.st_dev, held.st_ino) != (named.st_dev, named.st_ino):
            raise busy
    except BlockingIOError:
        os.close(fd)
        raise busy from None
    except FileNotFoundError:
        os.close(fd)
        raise busy from None
    except BaseException:
        os.close(fd)
        raise
    return fd


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
