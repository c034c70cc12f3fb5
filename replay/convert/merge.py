"""Several logs of one host into one time order: each spooled to disk, then merged.

One file's rows come out of its converter in time order, so one file is written straight
through. Several files are converted one after the other, each into a temporary Parquet spool,
and the spools are merged by time (ties: file order, then line order), a batch of each at a
time: memory does not grow with the logs.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from replay.convert.rows import SPOOL_COLUMNS, complete
from replay.errors import InputFileError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from replay.convert.converter import FileConverter
    from replay.convert.damo import DamoFile

MERGE_BATCH = 1 << 18
"""Rows read from each spool at a time."""


def spool_stdin(folder: Path, source: str = "-") -> Path:
    """Copy standard input (or a pipe, ``source``) to a file, so that it can be read twice.

    The access-source scan reads a log before its conversion does; a pipe (``-``, a FIFO,
    ``<(cat log)``) can be read only once, so it is spooled here first.
    """
    import shutil
    import sys

    fd, name = tempfile.mkstemp(prefix=".replay-stdin-", suffix=".log", dir=folder)
    with os.fdopen(fd, "wb") as out:
        if source == "-":
            shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
        else:
            try:
                with Path(source).open("rb") as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            except OSError as exc:
                raise InputFileError(f"log {source} cannot be read ({exc.strerror})") from None
    return Path(name)


def counted(
    chunks: Iterator[dict[str, np.ndarray]],
    converters: Sequence[FileConverter | DamoFile],
    progress: Callable[[int], None] | None,
) -> Iterator[dict[str, np.ndarray]]:
    """``chunks``, telling ``progress`` the lines read so far (over all files) at each."""
    for cols in chunks:
        if progress is not None:
            progress(sum(conv.info.lines for conv in converters))
        yield cols


def spool(chunks: Iterator[dict[str, np.ndarray]], path: Path) -> Path:
    """One file's rows, in time order, in a temporary Parquet file (int64 columns)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([(c, pa.int64()) for c in SPOOL_COLUMNS])
    with pq.ParquetWriter(path, schema, compression="none") as writer:
        for cols in map(complete, chunks):
            if len(cols["t_ns"]):
                writer.write_table(pa.table({c: cols[c] for c in SPOOL_COLUMNS}, schema=schema))
    return path


def merged(spools: list[Path]) -> Iterator[dict[str, np.ndarray]]:
    """Rows of several time-ordered spools, merged in time order (ties: file order)."""
    import pyarrow.parquet as pq

    readers = [pq.ParquetFile(p).iter_batches(batch_size=MERGE_BATCH) for p in spools]
    buffers: list[dict[str, np.ndarray] | None] = [None] * len(readers)

    def refill(i: int) -> None:
        if buffers[i] is None or not len(buffers[i]["t_ns"]):  # type: ignore[index]
            batch = next(readers[i], None)
            if batch is None:
                buffers[i] = None
            else:
                cols = {c: batch.column(c).to_numpy() for c in SPOOL_COLUMNS}
                cols["file"] = np.full(batch.num_rows, i, dtype=np.int64)
                buffers[i] = cols

    for i in range(len(readers)):
        refill(i)
    while True:
        live = [i for i in range(len(readers)) if buffers[i] is not None]
        if not live:
            return
        # Everything up to the smallest of the buffers' last times can be merged now.
        watermark = min(int(buffers[i]["t_ns"][-1]) for i in live)  # type: ignore[index]
        parts = []
        for i in live:
            buf = buffers[i]
            assert buf is not None
            cut = int(np.searchsorted(buf["t_ns"], watermark, side="right"))
            parts.append({k: v[:cut] for k, v in buf.items()})
            buffers[i] = {k: v[cut:] for k, v in buf.items()}
        cols = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        order = np.lexsort((cols["line"], cols["file"], cols["t_ns"]))
        yield {k: v[order] for k, v in cols.items() if k != "file"}
        for i in live:
            refill(i)
