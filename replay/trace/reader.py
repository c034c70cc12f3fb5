"""Read traces: open and check the footer and columns, then stream validated batches.

Memory stays bounded by the batch size, whatever the trace's length: a trace is read one
Parquet batch at a time and every check that spans batches (the order of ``t_ns``) carries one
number across.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from replay.errors import InputFileError, TraceDataError, TraceSchemaError
from replay.trace.checks import RowChecker
from replay.trace.schema import (
    COLUMN_TYPES,
    COLUMNS,
    EVENT_CODE,
    FOOTER_KEY,
    MAX_GPA,
    PAGE_SHIFT,
    V1_COLUMNS,
    TraceMeta,
    arrow_schema,
)

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    import pyarrow as pa
    import pyarrow.parquet as pq

BATCH_ROWS = 1 << 20
T = TypeVar("T")
_FIX = "re-create it with replay synth"


@dataclass(frozen=True)
class TraceFile:
    """An opened trace whose footer and column types have been checked."""

    path: Path
    meta: TraceMeta
    num_rows: int
    num_row_groups: int
    size_bytes: int


@dataclass(frozen=True)
class EventBatch:
    """A validated slice of a trace as numpy arrays.

    Enumerations are integer codes in schema order (``event``: ``EVENT_CODE``). A value in a null
    slot is unspecified (arrays are views of Arrow's buffers): validation guarantees that every
    column an event kind needs is present on its rows, and consumers read a column only on
    those rows.
    """

    start_row: int
    t_ns: np.ndarray
    event: np.ndarray
    vm: np.ndarray
    vcpu: np.ndarray
    gpa: np.ndarray
    len: np.ndarray
    op: np.ndarray
    source: np.ndarray
    priority: np.ndarray
    nid: np.ndarray
    nr_to_scan: np.ndarray
    nr_accesses: np.ndarray
    window_ns: np.ndarray
    sample_ns: np.ndarray
    age: np.ndarray

    def __len__(self) -> int:
        return len(self.t_ns)

    @cached_property
    def host(self) -> np.ndarray:
        """The rows that are not accesses (host events, few), found once for every consumer."""
        return np.flatnonzero(self.event != EVENT_CODE["access"])


def open_trace(path: str | Path) -> TraceFile:
    """Open a trace and check its footer and column types (not its rows).

    Parameters
    ----------
    path : str or Path
        A trace: a Parquet file with the ``replay.trace`` footer key.

    Returns
    -------
    TraceFile
        The path, the footer (``meta``), the numbers of rows and row groups, and the size.

    Raises
    ------
    InputFileError
        The file does not exist, is a folder, cannot be read, or is not Parquet.
    TraceSchemaError
        The file has no footer, or its footer or columns do not match the schema.
    TraceVersionError
        The footer has another schema version.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_scenario, open_trace
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> trace = open_trace("quick.parquet")
    >>> trace.num_rows, [vm.mmu_mode for vm in trace.meta.vms]
    (20018, ['tdp_mmu', 'shadow_direct'])
    """
    path = Path(path)
    pf = _parquet_file(path)
    raw = pf.metadata.metadata or {}
    footer = raw.get(FOOTER_KEY.encode())
    if footer is None:
        raise TraceSchemaError(
            f"trace {path}: this Parquet file has no {FOOTER_KEY!r} footer, so it is not a "
            f"kvm-mmu-replay trace; {_FIX}"
        )
    meta = TraceMeta.from_json(footer, str(path))
    _check_columns(path, pf.schema_arrow, meta.schema_version)
    return TraceFile(
        path=path,
        meta=meta,
        num_rows=pf.metadata.num_rows,
        num_row_groups=pf.metadata.num_row_groups,
        size_bytes=path.stat().st_size,
    )


def iter_batches(
    trace: TraceFile, batch_rows: int = BATCH_ROWS, *, read_ahead: bool = False
) -> Generator[EventBatch, None, None]:
    """Yield the trace's rows in order as validated :class:`EventBatch` es.

    Parameters
    ----------
    trace : TraceFile
        A trace :func:`open_trace` opened.
    batch_rows : int, optional
        The most rows a batch holds.
    read_ahead : bool, optional
        Decode and check the next batches on a background thread while the caller works.

    Yields
    ------
    EventBatch
        The next rows, as numpy arrays, enumerations as integer codes.

    Raises
    ------
    TraceDataError
        Naming the first bad row: ``t_ns`` going backwards, an event without a column its kind
        needs, a VM or vCPU the footer does not declare, a priority out of range.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, iter_batches, load_scenario, open_trace
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> trace = open_trace("quick.parquet")
    >>> [len(batch) for batch in iter_batches(trace, batch_rows=8_000)]
    [8000, 8000, 4018]
    """
    from pyarrow import ArrowException

    pf = _parquet_file(trace.path)
    checker = RowChecker(trace.path, trace.meta)

    def checked() -> Iterator[EventBatch]:
        start = 0
        # Arrow decodes with its own threads even when reading ahead: decoding is the larger
        # part of a replay's work, and more than one thread can keep up with while the engine runs.
        record_batches = _record_batches(pf, batch_rows)
        while True:
            try:
                record_batch = next(record_batches)
            except StopIteration:
                return
            except (OSError, ArrowException) as exc:
                raise _damaged(trace, start, exc) from None
            columns, host_rows = checker.check(record_batch, start)
            batch = EventBatch(start_row=start, **columns)
            batch.__dict__["host"] = host_rows  # found by the checks; saves consumers a pass
            start += len(batch)
            yield batch

    if read_ahead:
        # Decode and check the next row groups on a background thread (Arrow releases the GIL
        # while it decodes, numpy while it checks) while the caller works on this one.
        yield from prefetched(checked())
    else:
        yield from checked()


def _damaged(trace: TraceFile, row: int, exc: BaseException) -> TraceDataError:
    """The error for a page Arrow cannot decode, after ``row`` rows were read.

    A file whose footer is intact can still hold damaged pages (bytes zeroed or overwritten in
    the middle): Arrow then fails inside the row-group read (a thrift, ZSTD or Snappy error).
    """
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return TraceDataError(
        f"trace {trace.path}: the data after row {row} is damaged ({reason}); the file was cut "
        "or overwritten: copy it again or re-create it"
    )


def _record_batches(pf: pq.ParquetFile, batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The file's rows in batches of at most ``batch_rows``, a row group at a time.

    Reading whole row groups (with Arrow's threads) keeps memory flat, where ``iter_batches``
    over a whole file lets the process grow with every row group it reads. A row group much
    larger than a batch is streamed on its own instead.
    """
    import pyarrow as pa

    leaf = {pf.metadata.schema.column(j).path: j for j in range(pf.metadata.num_columns)}
    # A version 1 trace has none of the columns version 2 added (region rows): they read as
    # null, which is what they would hold (_check_columns let only such a file lack them).
    columns = [c for c in COLUMNS if c in leaf]
    absent = [c for c in COLUMNS if c not in leaf]
    nulls: dict[tuple[str, int], pa.Array] = {}  # read-only, so shared by every row group
    for run in _row_group_runs(pf, batch_rows):
        groups = [pf.metadata.row_group(i) for i in run]
        rows = sum(g.num_rows for g in groups)
        if rows > 4 * batch_rows:
            for rb in pf.iter_batches(batch_size=batch_rows, row_groups=run, columns=columns):
                for name in absent:
                    field = arrow_schema().field(name)
                    rb = rb.append_column(field, pa.nulls(rb.num_rows, type=field.type))
                yield rb
            continue
        # A column whose statistics say every value is null (the host-event columns of a
        # stretch of accesses) is made, not decoded: decoding it costs as much as a column of
        # values, for nothing.
        empty = [c for c in columns if c in leaf and all(_all_null(g, leaf[c]) for g in groups)]
        wanted = [c for c in columns if c not in empty]
        if len(run) == 1:
            table = pf.read_row_group(run[0], columns=wanted)
        else:
            table = pf.read_row_groups(run, columns=wanted)
        for name in [*empty, *absent]:
            field = pf.schema_arrow.field(name) if name in leaf else arrow_schema().field(name)
            key = (name, rows)
            if key not in nulls:
                nulls[key] = pa.nulls(rows, type=field.type)
            table = table.append_column(field, nulls[key])
        yield from table.combine_chunks().to_batches(max_chunksize=batch_rows)


def _row_group_runs(pf: pq.ParquetFile, batch_rows: int) -> Iterator[list[int]]:
    """Row groups in runs read together: each large group alone, small neighbours together.

    A file written with tiny row groups (one row each, say) would otherwise cost a read, a
    check and an engine step per group; runs of up to ``batch_rows`` rows cost one each.
    """
    run: list[int] = []
    rows = 0
    for i in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(i).num_rows
        if run and rows + n > batch_rows:
            yield run
            run, rows = [], 0
        run.append(i)
        rows += n
    if run:
        yield run


def _all_null(group: pq.RowGroupMetaData, column: int) -> bool:
    """Whether a row group's column holds nothing but nulls, by its statistics (if written)."""
    stats = group.column(column).statistics
    return bool(stats is not None and stats.has_null_count and stats.null_count == group.num_rows)


def prefetched(batches: Iterator[T], depth: int = 2) -> Generator[T, None, None]:
    """Iterate ``batches`` with up to ``depth`` batches read ahead on a background thread.

    Decoding Parquet and most numpy work release the GIL, so reading the next batch overlaps
    with replaying this one on a second core. Errors are re-raised here, in order.

    The worker is stopped when the iteration ends, and at the latest when the interpreter
    exits: an iterator still referenced then (a caller that stopped early and kept it) would
    otherwise leave the worker decoding while Python tears down, which crashed the process.
    """
    import atexit

    ahead = _ReadAhead(batches, depth)
    atexit.register(ahead.halt)
    try:
        while True:
            kind, item = ahead.slots.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(item, BaseException)
                raise item
            yield item  # type: ignore[misc]
    finally:
        ahead.halt()
        atexit.unregister(ahead.halt)


class _ReadAhead:
    """The worker thread of :func:`prefetched` and the queue it fills."""

    def __init__(self, batches: Iterator[object], depth: int) -> None:
        import queue
        import threading

        self._batches = batches
        self.slots: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._produce, name="trace-reader", daemon=True)
        self._worker.start()

    def halt(self) -> None:
        """Stop the worker and wait for it (a few seconds at most)."""
        import threading

        self._stop.set()
        # The cyclic collector may finalize a dropped iterator on any thread, this worker's
        # own included: it then stops at its next batch and must not join itself.
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout=5)

    def _produce(self) -> None:
        try:
            for batch in self._batches:
                if not self._hand("batch", batch):
                    return
            self._hand("end", None)
        except BaseException as exc:  # handed to the consumer, which raises it
            self._hand("error", exc)

    def _hand(self, kind: str, item: object) -> bool:
        """Queue ``item`` for the consumer; False once the consumer has stopped listening.

        Never a blocking ``put``: the last batches, the end or an error can find the queue
        full of batches nobody will take, and the worker would wait there forever.
        """
        import queue

        while not self._stop.is_set():
            try:
                self.slots.put((kind, item), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False


def count_mmio(meta: TraceMeta, batch: EventBatch) -> int:
    """Count the batch's accesses whose gpa lies outside every memslot of their VM (rule 1).

    Every slot of every VM is one range of packed ``vm << 40 | gfn`` keys (slots are page
    aligned and end below 2**52, so a gfn fits 40 bits); slots of a VM do not overlap, so one
    binary search over the slots' sorted starts places every access: the cost grows with the
    log of the number of slots, not with it (a VMM with 30,000 memslots).
    """
    is_access = batch.event == EVENT_CODE["access"]
    if not is_access.any():
        return 0
    vm = batch.vm[is_access].astype(np.uint64)
    gpa = batch.gpa[is_access]
    starts, ends = _slot_keys(meta)
    shift = np.uint64(_GFN_BITS)
    gfn = np.minimum(gpa >> np.uint64(PAGE_SHIFT), np.uint64((1 << _GFN_BITS) - 1))
    key = (vm << shift) | gfn
    slot = np.searchsorted(starts, key, side="right") - 1
    inside = (slot >= 0) & (key < ends[np.maximum(slot, 0)]) & (gpa < np.uint64(MAX_GPA))
    return int(len(gpa) - np.count_nonzero(inside))


_GFN_BITS = 40
"""Bits of a gfn below 2**52 (MAX_GPA): the low part of a packed (VM, gfn) key."""


def _slot_keys(meta: TraceMeta) -> tuple[np.ndarray, np.ndarray]:
    """Every memslot as packed (VM id, gfn) keys [start, end), sorted by start."""
    rows = sorted(
        ((v.id << _GFN_BITS) | s.gfn_start, (v.id << _GFN_BITS) | (s.gfn_start + s.npages))
        for v in meta.vms
        for s in v.memslots
    )
    keys = np.array(rows, dtype=np.uint64).reshape(-1, 2)
    return keys[:, 0].copy(), keys[:, 1].copy()


def _parquet_file(path: Path) -> pq.ParquetFile:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.exists():
        raise InputFileError(f"trace {path} does not exist; check the path")
    if path.is_dir():
        raise InputFileError(f"trace {path} is a folder; give a trace file (.parquet)")
    try:
        return pq.ParquetFile(path)
    except PermissionError:
        raise InputFileError(f"trace {path} cannot be read (permission denied)") from None
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(
            f"trace {path} is not a readable Parquet file ({reason}); give a kvm-mmu-replay "
            "trace (.parquet), such as replay synth writes"
        ) from None


def _check_columns(path: Path, schema: pa.Schema, version: int) -> None:
    import pyarrow as pa

    expected = arrow_schema()
    for fld in expected:
        idx = schema.get_field_index(fld.name)
        if idx < 0 and version == 1 and fld.name not in V1_COLUMNS:
            continue  # added by version 2; reads as null
        if idx < 0:
            raise TraceSchemaError(f"trace {path}: column {fld.name!r} is missing; {_FIX}")
        got = schema.field(idx).type
        if COLUMN_TYPES[fld.name].startswith("enum:"):
            ok = (
                (
                    pa.types.is_dictionary(got)
                    and pa.types.is_integer(got.index_type)
                    and (
                        pa.types.is_string(got.value_type)
                        or pa.types.is_large_string(got.value_type)
                    )
                )
                or pa.types.is_string(got)
                or pa.types.is_large_string(got)
            )
            want = "strings (plain or dictionary-encoded)"
        else:
            ok = pa.types.is_integer(got) or pa.types.is_null(got)
            want = f"integers ({fld.type})"
        if not ok:
            raise TraceSchemaError(
                f"trace {path}: column {fld.name!r} has type {got}, expected {want}; {_FIX}"
            )
