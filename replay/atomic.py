"""Outputs that appear whole or not at all.

Every file or folder the tool writes is first written under a temporary name in the same folder
and renamed into place only when it is complete. An error or Ctrl-C removes the temporary copy,
so a user never finds a partial output that looks finished.
"""

from __future__ import annotations

import os
import shutil
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
        fd, probe = tempfile.mkstemp(prefix=".replay-probe.", dir=folder)
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        yield tmp
        tmp.replace(path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise
