"""Outputs that appear whole or not at all.

Every file or folder the tool writes is first written under a temporary name in the same folder
and renamed into place only when it is complete. An error or Ctrl-C removes the temporary copy,
so a user never finds a partial output that looks finished.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from typing import TYPE_CHECKING

from replay.errors import OutputPathError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def check_output_path(path: Path, what: str = "output") -> None:
    """Fail early, with a fix, when ``path`` cannot be written."""
    parent = path.parent
    if not parent.is_dir():
        raise OutputPathError(
            f"{what} {path}: folder {parent} does not exist; create it or choose another path"
        )
    if path.is_dir():
        raise OutputPathError(f"{what} {path} is a folder; give a file name")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(
            f"{what} {path}: folder {parent} is not writable; choose another path"
        )


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
