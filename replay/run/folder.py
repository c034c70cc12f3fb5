"""The runs folder of one replay: its lock, what it may hold, and the swap that replaces it.

A runs folder (``replay run -o DIR``) holds ONE replay's set of runs, ``DIR/<policy>/``, and
the report ``--report`` writes beside them. Without ``--force`` a folder that exists and is not
empty is refused. With ``--force`` the whole set is replaced as a whole: the new set is written
into a staging folder beside ``DIR`` (``.DIR.PID.partial``) and exchanged with ``DIR`` in one
step (:func:`replay.atomic.replace_whole`), so an interruption at any moment leaves the old set
or the new one, never a mix. ``--force`` refuses a folder holding anything that is not part of
a set of runs, so that it never removes a user's own files.

The command holds a lock on ``DIR`` from its first check to its last write (the report), and
on the staging folder from its creation: after the exchange the name ``DIR`` leads to the
staging folder's inode, which the same command holds, so a second command is refused at every
moment, before, during and after the swap.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from replay.atomic import (
    lock_folder,
    output_lock,
    partial_name,
    refusal_to_write_in,
    replace_whole,
    sweep_leftovers,
)
from replay.errors import OutputPathError
from replay.run.schema import SUMMARY_FILE

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

SET_FILES = ("report.html", "report-*.png")
"""Files of a runs folder that belong to its set of runs besides the run folders."""


@dataclass
class RunsFolder:
    """A runs folder locked for one replay, and the staging folder its new set is written in."""

    path: Path
    staging: Path
    swept: list[Path] = field(default_factory=list)
    """Temporary outputs of killed commands removed before writing."""
    swapped: bool = False
    """Whether the new set is in place (the old one, if any, is gone or going)."""

    def put_in_place(self) -> None:
        """Replace the folder's content by the staging folder's, as a whole."""
        replace_whole(self.staging, self.path)
        self.swapped = True


def foreign_entries(folder: Path) -> list[str]:
    """What ``folder`` holds that is not part of a set of runs, by name."""
    out = []
    for entry in sorted(folder.iterdir()):
        if entry.is_dir() and not entry.is_symlink() and (entry / SUMMARY_FILE).is_file():
            continue  # a run folder
        if entry.is_file() and any(fnmatch.fnmatch(entry.name, p) for p in SET_FILES):
            continue
        out.append(entry.name + ("/" if entry.is_dir() else ""))
    return out


def _check_contents(folder: Path, force: bool) -> None:
    try:
        held = sorted(p.name + ("/" if p.is_dir() else "") for p in folder.iterdir())
    except OSError as exc:
        raise OutputPathError(
            f"runs folder {folder} cannot be read ({exc.strerror}); choose another -o"
        ) from None
    if not held:
        return
    shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
    if not force:
        raise OutputPathError(
            f"runs folder {folder} exists and holds {shown}; pass --force to replace that set "
            "of runs as a whole, or choose another -o"
        )
    foreign = foreign_entries(folder)
    if foreign:
        named = ", ".join(foreign[:5]) + (
            f" and {len(foreign) - 5} more" if len(foreign) > 5 else ""
        )
        raise OutputPathError(
            f"runs folder {folder} holds {named}, which is not part of a set of runs; --force "
            "replaces only runs and their report: move it away or choose another -o"
        )


@contextmanager
def runs_folder(out_dir: Path, *, force: bool = False) -> Iterator[RunsFolder]:
    """Lock ``out_dir`` for one replay and yield it with a locked staging folder beside it.

    Checks first that the runs may be written (see the module's text), before a long replay.
    On the way out the staging folder is removed (after a swap it holds the old set), and a
    ``out_dir`` this call created is removed again if nothing was put in it.

    Raises
    ------
    OutputPathError
        ``out_dir`` is a file, cannot be created or written, holds runs (without ``force``) or
        files that are not runs (with it), or another command is writing it.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"output {out_dir} is a file; give a folder for the runs")
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"cannot create {parent} ({exc.strerror}); choose another -o"
        ) from None
    refused = refusal_to_write_in(parent)
    if refused:
        raise OutputPathError(f"folder {parent} is not writable ({refused}); choose another -o")
    swept = sweep_leftovers(parent)
    with ExitStack() as stack:
        stack.enter_context(output_lock(out_dir, "runs folder"))
        swept += sweep_leftovers(out_dir)  # e.g. a report a killed command was writing
        _check_contents(out_dir, force)
        staging = partial_name(out_dir)
        # Registered before the folder is made, so that no moment (a signal can arrive at any)
        # leaves it behind: on the way out it is removed while both locks are still held.
        held: list[int] = []
        stack.callback(_remove_staging, staging, held)
        staging.mkdir()
        held.append(lock_folder(staging, "runs folder"))
        yield RunsFolder(out_dir, staging, swept)


def _remove_staging(staging: Path, held: list[int]) -> None:
    try:
        shutil.rmtree(staging, ignore_errors=True)
    finally:
        for fd in held:
            os.close(fd)
