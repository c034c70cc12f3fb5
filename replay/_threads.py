"""Run several pieces of work at once: one on the calling thread, the others on a pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from concurrent.futures import ThreadPoolExecutor


def run_all(pool: ThreadPoolExecutor, calls: Sequence[Callable[[], object]]) -> None:
    """Run ``calls[0]`` here and the rest on ``pool``; re-raise the first error once all stopped.

    Every call finishes before an error propagates, so no thread is left working on state the
    caller is about to drop (a policy's engine, a lane's share of an epoch).

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> done = []
    >>> with ThreadPoolExecutor(2) as pool:
    ...     run_all(pool, [lambda: done.append(0), lambda: done.append(1), lambda: done.append(2)])
    >>> sorted(done)
    [0, 1, 2]
    """
    futures = [pool.submit(call) for call in calls[1:]]
    errors: list[BaseException] = []
    try:
        calls[0]()
    except BaseException as exc:  # the others still finish before it propagates
        errors.append(exc)
    for fut in futures:
        failed = fut.exception()
        if failed is not None:
            errors.append(failed)
    if errors:
        raise errors[0]
