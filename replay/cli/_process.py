"""Process settings for the ``replay`` command, made on import, before numpy and pyarrow load."""

from __future__ import annotations

import os

from replay._memory import keep_freed_memory, one_arena


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


tune()
