"""Glibc's malloc settings for a replay's process: keep freed memory, and one arena.

No settings are made on import: the ``replay`` command makes them (``replay.cli._process``), a
fleet worker only the first (``replay.fleet.worker``).
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any


def keep_freed_memory() -> None:
    """Glibc keeps freed blocks up to 1 GiB in its heap and never trims it.

    Why: ``replay.cli._process.tune``.

    mallopt takes effect whenever it is called, also after the libraries are loaded.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, 1 << 30)


def one_arena() -> None:
    """One glibc malloc arena for the whole process; call it before any thread starts.

    glibc gives a thread that allocates while another holds the main arena an arena of its own,
    and hands such an arena's heap back to the kernel whole once everything in it is freed,
    whatever the trim threshold. The fault writer's thread, which builds each row group and
    frees it, then got fresh pages to fault in and zero for every one (a one-policy replay of
    20 M many-small-vms accesses: 171 k page faults; 43 k with one arena, as many as with the
    conversions on the engine's thread; scripts/PERFORMANCE.md, "Page faults"). A command's
    threads allocate numpy's arrays, not many small objects: the one arena's lock costs
    nothing measurable. (A fleet worker, which may run a job per thread, keeps glibc's arenas.)
    """
    mallopt = _mallopt()
    if mallopt is not None:
        m_arena_max = -8
        mallopt(m_arena_max, 1)


def _mallopt() -> Any:
    """The C library's ``mallopt``, or None (not Linux; or not glibc: musl has none)."""
    if sys.platform != "linux":
        return None
    try:
        return ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
