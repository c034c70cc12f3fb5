"""Process settings for the ``replay`` command, made on import, before numpy and pyarrow load."""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Any


def tune() -> None:
    """Settings for a command's process, made before numpy and pyarrow load; a user's win.

    * One OpenBLAS thread: nothing here does linear algebra worth threads, and OpenBLAS's
      threads, started when numpy is imported, spin on the cores a replay needs.
    * Freed memory is kept for reuse, not handed back to the kernel: a replay allocates and
      frees buffers of the same sizes over and over (numpy's temporaries, Arrow's decoded row
      groups), and each one handed back comes back as fresh pages the kernel must fault in and
      zero, in system time the replay waits for. Memory stays bounded by the largest working
      set (the benchmark checks peak RSS at two trace lengths). glibc's malloc (numpy's) keeps
      blocks up to 1 GiB in its heap and never trims it, in one arena for every thread; Arrow's
      mimalloc never purges.
    """
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MIMALLOC_PURGE_DELAY", "-1")
    if "MALLOC_MMAP_THRESHOLD_" not in os.environ:
        keep_freed_memory()
    if "MALLOC_ARENA_MAX" not in os.environ:
        one_arena()


def keep_freed_memory() -> None:
    """Glibc keeps freed blocks up to 1 GiB in its heap and never trims it (see :func:`tune`).

    mallopt takes effect whenever it is called, also after the libraries are loaded.
    """
    mallopt = _mallopt()
    if mallopt is None:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, 1 << 30)


def one_arena() -> None:
    """One glibc malloc arena for the whole process (see :func:`tune`); before threads start.

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


tune()
