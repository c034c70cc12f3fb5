"""A ring of trace batches in shared memory: one read of the trace for several processes.

The replay in processes (:mod:`.procs`) decodes and checks the trace once, in the parent, and
hands every batch to the child processes that replay the policies. Decoding is the largest
part of a replay after the engines (about 1.1 s of CPU for 20 M rows, more than a policy's
share of some replays), so a child that read the trace itself would pay it again.

A :class:`BatchRing` is an anonymous memory file (``memfd_create``) of a few slots, each large
enough for any batch. The parent writes a batch's columns into a slot through its own mapping
and sends the children a small descriptor (:class:`SlotLayout`); each child copies the columns
out with ``preadv`` into arrays of its own and tells the parent the slot is free again. So:

* the children never map the ring: the shared pages count once, in the parent's RSS, which is
  what they cost (a child's copy of the batch it replays counts in its own);
* a child's engine owns the arrays it is fed, as it does when it reads the trace itself: the
  parent may overwrite the slot while the engine still holds views of the batch;
* nothing has a name in the file system: when the last process holding the file ends, however
  it ends (a signal, SIGKILL included), the kernel frees it. There is nothing to clean up.

Columns the reader gives as a broadcast constant (a column absent from every row of a batch,
no memory behind it) travel as their one value and are broadcast again in the child.
"""

from __future__ import annotations

import mmap
import os
import sys
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

from replay.trace.reader import EventBatch
from replay.trace.schema import COLUMN_TYPES

if TYPE_CHECKING:
    from collections.abc import Iterator

COLUMNS = tuple(f.name for f in fields(EventBatch) if f.name != "start_row")
"""The batch's columns, in the order of :class:`~replay.trace.reader.EventBatch`."""

_ALIGN = 64
_FREE_REFS = 3
"""``sys.getrefcount`` of a spare array nothing else refers to: the dict's reference, the
local name's and the call's argument."""


@dataclass(frozen=True)
class Column:
    """Where one column of a batch is: ``offset`` in the ring, or ``value`` broadcast."""

    name: str
    dtype: str
    length: int
    offset: int | None
    value: np.ndarray | None = None


@dataclass(frozen=True)
class SlotLayout:
    """A batch in a slot of the ring: what a child needs to copy it out (a few hundred bytes)."""

    start_row: int
    columns: tuple[Column, ...]


def slot_bytes(batch_rows: int) -> int:
    """Bytes a slot needs for any batch of up to ``batch_rows`` rows.

    Every column at its schema type (an enumeration is a one-byte code), ``host`` (int64 row
    numbers) and alignment. Only the bytes written take memory, but the whole ring counts in
    the parent's address space, which a user may limit (``ulimit -v``): no slack beyond that.
    A batch that does not fit goes whole through the pipe instead (:meth:`BatchRing.put`).
    """
    per_row = sum(
        1 if kind.startswith("enum:") else np.dtype(kind).itemsize
        for name, kind in COLUMN_TYPES.items()
        if name in COLUMNS
    )
    return batch_rows * (per_row + 8) + _ALIGN * (len(COLUMNS) + 1)


class BatchRing:
    """``slots`` slots of ``size`` bytes in one anonymous shared memory file.

    Made before the children are forked (they inherit the file descriptor); the parent writes,
    the children read (see the module's text).
    """

    def __init__(self, slots: int, size: int) -> None:
        self.slots = slots
        self.size = size
        self._spares: dict[str, np.ndarray] = {}
        """Per column, the array the last batch taken was copied into (a child's side)."""
        self.fd = os.memfd_create("replay-batches", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, slots * size)
            self._map: mmap.mmap | None = mmap.mmap(self.fd, slots * size)
        except BaseException:
            os.close(self.fd)
            raise

    def put(self, slot: int, batch: EventBatch) -> SlotLayout | None:
        """Write ``batch`` into ``slot``; its layout, or None if it does not fit (send it whole)."""
        assert self._map is not None, "put in the parent only"
        at, end = slot * self.size, (slot + 1) * self.size
        columns = []
        for name, array in _arrays(batch):
            if len(array) and array.strides[0] == 0:
                columns.append(Column(name, array.dtype.str, len(array), None, array[:1].copy()))
                continue
            data = np.ascontiguousarray(array)
            if at + data.nbytes > end:
                return None
            np.frombuffer(self._map, np.uint8, data.nbytes, at)[:] = data.view(np.uint8)
            columns.append(Column(name, data.dtype.str, len(data), at))
            at += -(-data.nbytes // _ALIGN) * _ALIGN
        return SlotLayout(batch.start_row, tuple(columns))

    def take(self, layout: SlotLayout) -> EventBatch:
        """The batch ``layout`` describes, copied into arrays of this process."""
        arrays: dict[str, np.ndarray] = {}
        for col in layout.columns:
            if col.offset is None:
                assert col.value is not None
                arrays[col.name] = np.broadcast_to(col.value, (col.length,))
                continue
            out = self._buffer(col.name, np.dtype(col.dtype), col.length)
            _read_into(self.fd, out, col.offset)
            arrays[col.name] = out
        host = arrays.pop("host")
        batch = EventBatch(start_row=layout.start_row, **arrays)
        batch.__dict__["host"] = host  # as the reader sets it (a cached property)
        return batch

    def _buffer(self, name: str, dtype: np.dtype[Any], length: int) -> np.ndarray:
        """An array of ``length`` for column ``name``, reusing one no batch still holds.

        Fresh arrays of megabytes each cost the kernel's page faults on every batch (a third
        of the copy's time, measured); the child's previous batches' arrays are reused once
        nothing refers to them any more. A reference held past the batch (a view an engine
        kept) keeps its array out of reuse: the batch is then copied into a fresh one.
        """
        spare = self._spares.get(name)
        # A view of the spare (a column of a batch still alive) adds one to its count.
        if (
            spare is not None
            and spare.dtype == dtype
            and len(spare) >= length
            and sys.getrefcount(spare) == _FREE_REFS
        ):
            return spare[:length]
        spare = np.empty(length, dtype=dtype)
        self._spares[name] = spare
        return spare[:length]  # a view, as a reused one is: the spare's count then says

    def forget_mapping(self) -> None:
        """Drop this process's mapping (a child reads through the descriptor only)."""
        if self._map is not None:
            self._map.close()
            self._map = None

    def close(self) -> None:
        """Free the ring in this process (the memory goes once every process has closed it)."""
        self.forget_mapping()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _arrays(batch: EventBatch) -> Iterator[tuple[str, np.ndarray]]:
    for name in COLUMNS:
        yield name, getattr(batch, name)
    yield "host", batch.host


def _read_into(fd: int, out: np.ndarray, offset: int) -> None:
    """Fill ``out`` from ``fd`` at ``offset`` (a read may return less than asked: go on)."""
    view = out.view(np.uint8).data
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise OSError(f"shared batch ring: short read at {offset + done}")
        done += got
