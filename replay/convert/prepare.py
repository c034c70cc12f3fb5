"""Blocks of a log split into lines on worker threads, a few blocks ahead of the converter.

Splitting a block (:func:`.lines.split_block`) and reading its fast events' payloads
(:func:`.payloads.fast_fields`) is numpy work that releases the GIL, so it runs on a small
thread pool while the converter's Python work runs on the previous block; the file's sha256 is
updated on a thread of its own, in file order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.convert.damon import AGGREGATED, aggregated_fields
from replay.convert.layout import event_name
from replay.convert.lines import LineBlock, split_block
from replay.convert.payloads import FAST_FORMATS, fast_fields
from replay.convert.source import read_blocks

if TYPE_CHECKING:
    from collections.abc import Iterator
    from concurrent.futures import Future

PREPARE_THREADS = 2
"""Blocks split at once. Splitting is numpy loops that release the GIL, so two threads keep
both cores of a small host busy next to the converter's Python work; more threads only hold
more blocks in memory while they wait for a core."""
PREPARE_AHEAD = 4
"""Blocks read and being split ahead of the converter (bounds memory: 16 MiB each)."""


@dataclass
class Prepared:
    """A block split into lines, with the payloads of the fast events already parsed.

    Made on a worker thread (numpy releases the GIL), so that it overlaps with the
    converter's own work on the previous block.
    """

    blk: LineBlock
    unterminated: bool
    """The block ends without a newline: the log's last line was cut."""
    selections: dict[int, np.ndarray]
    """Fast-split line indices of each event column."""
    fast: dict[int, tuple[list[np.ndarray], np.ndarray]]
    """Parsed values and validity of each fast event column."""


def prepare(data: bytes, first_line: int, unterminated: bool) -> Prepared:
    """Split a block and parse the payloads of its fast events."""
    blk = split_block(data, first_line)
    ok_idx = np.flatnonzero(blk.ok)
    selections: dict[int, np.ndarray] = {}
    fast: dict[int, tuple[list[np.ndarray], np.ndarray]] = {}
    ids = blk.event_id[ok_idx]
    for eid, column in enumerate(blk.events):
        sel = ok_idx[ids == eid] if len(blk.events) > 1 else ok_idx
        selections[eid] = sel
        name = event_name(column)[0]
        if name in FAST_FORMATS and len(sel):
            fast[eid] = fast_fields(blk, sel, name)
        elif name == AGGREGATED and len(sel):
            fast[eid] = aggregated_fields(blk, sel)
    return Prepared(blk, unterminated, selections, fast)


def prepared_blocks(path: str, sha: Any) -> Iterator[Prepared]:
    """Blocks of a log, split on worker threads a few blocks ahead, handed out in order.

    ``sha`` (a ``hashlib`` hash) is fed every block's bytes, in file order.
    """
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    next_line = 1

    def numbered(prepared: Prepared) -> Prepared:
        # Blocks are split apart from each other; their lines are numbered here, in order.
        nonlocal next_line
        prepared.blk.line_no += next_line
        next_line += len(prepared.blk)
        return prepared

    with (
        ThreadPoolExecutor(PREPARE_THREADS, thread_name_prefix="convert") as pool,
        ThreadPoolExecutor(1, thread_name_prefix="convert-sha") as hasher,  # in file order
    ):
        hashing: deque[Future[Any]] = deque()
        pending: deque[Future[Prepared]] = deque()

        def hashed(chunk: bytes) -> None:
            # Every chunk read, in order: the file's own bytes, even those of a line too long
            # to be kept. At most a few chunks wait for the hash, which bounds memory.
            hashing.append(hasher.submit(sha.update, chunk))
            while len(hashing) > PREPARE_AHEAD:
                hashing.popleft().result()

        try:
            for block in read_blocks(path, on_read=hashed):
                pending.append(pool.submit(prepare, block.data, 0, block.unterminated))
                if len(pending) >= PREPARE_AHEAD:
                    yield numbered(pending.popleft().result())
            while pending:
                yield numbered(pending.popleft().result())
            while hashing:
                hashing.popleft().result()
        finally:
            for future in (*pending, *hashing):
                future.cancel()
