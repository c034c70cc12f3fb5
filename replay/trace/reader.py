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
from replay.trace.schema import (
    COLUMN_TYPES,
    COLUMNS,
    ENUMS,
    EVENT_CODE,
    EVENT_KINDS,
    FOOTER_KEY,
    PRIORITY_MAX,
    REQUIRED_BY_EVENT,
    TraceMeta,
    arrow_schema,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

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
    _check_columns(path, pf.schema_arrow)
    return TraceFile(
        path=path,
        meta=meta,
        num_rows=pf.metadata.num_rows,
        num_row_groups=pf.metadata.num_row_groups,
        size_bytes=path.stat().st_size,
    )


def iter_batches(
    trace: TraceFile, batch_rows: int = BATCH_ROWS, *, read_ahead: bool = False
) -> Iterator[EventBatch]:
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
    checker = _RowChecker(trace)

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
            batch = checker.check(record_batch, start)
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

    columns = list(COLUMNS)
    leaf = {pf.metadata.schema.column(j).path: j for j in range(pf.metadata.num_columns)}
    nulls: dict[tuple[str, int], pa.Array] = {}  # read-only, so shared by every row group
    for i in range(pf.metadata.num_row_groups):
        group = pf.metadata.row_group(i)
        if group.num_rows > 4 * batch_rows:
            yield from pf.iter_batches(batch_size=batch_rows, row_groups=[i], columns=columns)
            continue
        # A column whose statistics say every value is null (the host-event columns of a
        # stretch of accesses) is made, not decoded: decoding it costs as much as a column of
        # values, for nothing.
        empty = [c for c in columns if c in leaf and _all_null(group, leaf[c])]
        table = pf.read_row_group(i, columns=[c for c in columns if c not in empty])
        for name in empty:
            field = pf.schema_arrow.field(name)
            key = (name, group.num_rows)
            if key not in nulls:
                nulls[key] = pa.nulls(group.num_rows, type=field.type)
            table = table.append_column(field, nulls[key])
        yield from table.combine_chunks().to_batches(max_chunksize=batch_rows)


def _all_null(group: pq.RowGroupMetaData, column: int) -> bool:
    """Whether a row group's column holds nothing but nulls, by its statistics (if written)."""
    stats = group.column(column).statistics
    return bool(stats is not None and stats.has_null_count and stats.null_count == group.num_rows)


def prefetched(batches: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``batches`` with up to ``depth`` batches read ahead on a background thread.

    Decoding Parquet and most numpy work release the GIL, so reading the next batch overlaps
    with replaying this one on a second core. Errors are re-raised here, in order.

    The worker is stopped when the iteration ends, and at the latest when the interpreter
    exits: an iterator still referenced then (a caller that stopped early and kept it) would
    otherwise leave the worker decoding while Python tears down, which crashed the process.
    """
    import atexit
    import queue
    import threading

    slots: queue.Queue[tuple[str, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                while not stop.is_set():
                    try:
                        slots.put(("batch", batch), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            slots.put(("end", None))
        except BaseException as exc:  # handed to the consumer, which raises it
            slots.put(("error", exc))

    worker = threading.Thread(target=produce, name="trace-reader", daemon=True)

    def halt() -> None:
        stop.set()
        worker.join(timeout=5)

    worker.start()
    atexit.register(halt)
    try:
        while True:
            kind, item = slots.get()
            if kind == "end":
                return
            if kind == "error":
                assert isinstance(item, BaseException)
                raise item
            yield item  # type: ignore[misc]
    finally:
        halt()
        atexit.unregister(halt)


def count_mmio(meta: TraceMeta, batch: EventBatch) -> int:
    """Count the batch's accesses whose gpa lies outside every memslot of their VM (rule 1)."""
    is_access = batch.event == EVENT_CODE["access"]
    if not is_access.any():
        return 0
    vm = batch.vm[is_access]
    gpa = batch.gpa[is_access]
    max_slots = max(len(v.memslots) for v in meta.vms)
    inside = np.zeros(len(gpa), dtype=bool)
    for j in range(max_slots):
        # Slot j of every VM, padded with empty ranges for VMs with fewer slots.
        starts = np.zeros(0x10000, dtype=np.uint64)
        ends = np.zeros(0x10000, dtype=np.uint64)
        for v in meta.vms:
            if j < len(v.memslots):
                starts[v.id] = v.memslots[j].gpa_start
                ends[v.id] = v.memslots[j].gpa_end
        inside |= (gpa >= starts[vm]) & (gpa < ends[vm])
    return int(len(gpa) - np.count_nonzero(inside))


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


def _check_columns(path: Path, schema: pa.Schema) -> None:
    import pyarrow as pa

    expected = arrow_schema()
    for fld in expected:
        idx = schema.get_field_index(fld.name)
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


_NP_TYPES: dict[str, type[np.generic]] = {
    "int8": np.int8,
    "int16": np.int16,
    "int64": np.int64,
    "uint16": np.uint16,
    "uint32": np.uint32,
    "uint64": np.uint64,
}
# Which event kinds need each column (the schema's "required" lists, inverted), and the same
# as lookup tables indexed by event code.
_NEEDED_BY: dict[str, list[int]] = {name: [] for name in COLUMNS}
for _kind, _required in REQUIRED_BY_EVENT.items():
    for _name in _required:
        _NEEDED_BY[_name].append(EVENT_CODE[_kind])
_NEEDS: dict[str, np.ndarray] = {
    name: np.isin(np.arange(256), kinds) for name, kinds in _NEEDED_BY.items()
}


class _RowChecker:
    """Turns record batches into :class:`EventBatch` es, checking every row.

    Columns are viewed, not copied, wherever Arrow allows; a value in a null slot is left as
    Arrow stored it, since every consumer reads a column only on rows whose kind requires it,
    and this checker has made sure those rows are not null.
    """

    def __init__(self, trace: TraceFile) -> None:
        self.path = trace.path
        self.meta = trace.meta
        self.last_t: int | None = None
        # vcpus_of[vm id] = number of vCPUs, 0 for an id the footer does not declare.
        self.vcpus_of = np.zeros(0x10000, dtype=np.int32)
        for vm in trace.meta.vms:
            self.vcpus_of[vm.id] = vm.vcpus
        ids = sorted(vm.id for vm in trace.meta.vms)
        self._n_vms = len(ids)
        self._vcpus = trace.meta.vms[0].vcpus
        self._dense = ids == list(range(len(ids))) and all(
            vm.vcpus == self._vcpus for vm in trace.meta.vms
        )

    def _fail(self, row: int, what: str, fix: str) -> TraceDataError:
        return TraceDataError(f"trace {self.path}, row {row}: {what}; {fix}")

    def check(self, rb: pa.RecordBatch, start: int) -> EventBatch:
        cols = {name: rb.column(name) for name in COLUMNS}
        t_col = cols["t_ns"]
        if t_col.null_count:
            row = start + _first(~_valid(t_col))
            raise self._fail(row, "t_ns is null", "every event needs a time")
        t_ns = self._ints(t_col, "t_ns", start)
        self._check_order(t_ns, start)

        event_col = cols["event"]
        if event_col.null_count:
            row = start + _first(~_valid(event_col))
            raise self._fail(row, "event is null", f"use one of {', '.join(EVENT_KINDS)}")
        event = self._codes(event_col, "event", start).view(np.uint8)
        # Accesses (code 0) are nearly every row: count the other kinds on their few rows.
        host_rows = np.flatnonzero(event)
        counts = np.bincount(event[host_rows], minlength=len(EVENT_KINDS))
        counts[EVENT_CODE["access"]] = len(event) - len(host_rows)
        for name, kinds in _NEEDED_BY.items():
            col = cols[name]
            needing = sum(int(counts[k]) for k in kinds)
            if not col.null_count or not needing:
                continue
            # Look at whichever is fewer: the null slots, or the rows whose kind needs the column.
            if col.null_count <= needing:
                nulls = np.flatnonzero(~_valid(col))
                bad = nulls[_NEEDS[name][event[nulls]]]
            else:
                rows = host_rows[_NEEDS[name][event[host_rows]]]
                bad = rows[~_valid(col)[rows]]
            if len(bad):
                i = int(bad.min())
                kind = EVENT_KINDS[event[i]]
                required = REQUIRED_BY_EVENT[kind]
                raise self._fail(
                    start + i,
                    f"{kind} event has no {name}",
                    f"a {kind} event needs {', '.join(required)}",
                )
        out = {
            name: self._ints(cols[name], name, start)
            for name in ("vm", "vcpu", "gpa", "len", "priority", "nid", "nr_to_scan")
        }
        op = self._codes(cols["op"], "op", start)
        source = self._codes(cols["source"], "source", start)

        access, unmap, zap_all = EVENT_CODE["access"], EVENT_CODE["unmap"], EVENT_CODE["zap_all"]
        if counts[access] + counts[unmap] + counts[zap_all] and not self._plainly_valid(out):
            vcpus = self.vcpus_of[out["vm"]]
            unknown_vm = _NEEDS["vm"][event] & (vcpus == 0)
            if unknown_vm.any():
                i = _first(unknown_vm)
                known = ", ".join(str(v.id) for v in self.meta.vms)
                raise self._fail(
                    start + i,
                    f"VM {out['vm'][i]} is not in the footer's VM table (known: {known})",
                    "fix the vm column or add the VM to the footer",
                )
            bad_vcpu = (event == access) & (out["vcpu"] >= vcpus)
            if bad_vcpu.any():
                i = _first(bad_vcpu)
                raise self._fail(
                    start + i,
                    f"vCPU {out['vcpu'][i]} of VM {out['vm'][i]} is beyond the VM's "
                    f"{vcpus[i]} vCPUs",
                    "fix the vcpu column or the VM's vcpus in the footer",
                )
        if counts[EVENT_CODE["reclaim"]]:
            prio = out["priority"]
            bad_prio = (event == EVENT_CODE["reclaim"]) & ((prio < 0) | (prio > PRIORITY_MAX))
            if bad_prio.any():
                i = _first(bad_prio)
                raise self._fail(start + i, f"priority {prio[i]} is out of range", "use 0..12")
        batch = EventBatch(start_row=start, t_ns=t_ns, event=event, op=op, source=source, **out)
        batch.__dict__["host"] = host_rows  # found above; saves its consumers a pass
        return batch

    def _plainly_valid(self, out: dict[str, np.ndarray]) -> bool:
        """Tell whether every vm and vcpu value is plainly in range.

        True when the VM ids are 0..n-1 with one vCPU count, and every vm and vcpu value (null
        slots included) is below those bounds; otherwise the row-by-row check runs.
        """
        if not self._dense or not len(out["vm"]):
            return False
        return bool(out["vm"].max() < self._n_vms and out["vcpu"].max() < self._vcpus)

    def _check_order(self, t_ns: np.ndarray, start: int) -> None:
        if self.last_t is not None and len(t_ns) and t_ns[0] < self.last_t:
            raise self._fail(
                start,
                f"t_ns goes backwards ({t_ns[0]} after {self.last_t})",
                "sort the trace by t_ns",
            )
        backwards = t_ns[1:] < t_ns[:-1]
        if backwards.any():
            i = _first(backwards) + 1
            raise self._fail(
                start + i,
                f"t_ns goes backwards ({t_ns[i]} after {t_ns[i - 1]})",
                "sort the trace by t_ns",
            )
        if len(t_ns):
            self.last_t = int(t_ns[-1])

    def _ints(self, col: pa.Array, name: str, start: int) -> np.ndarray:
        """An integer column as numpy, viewed without a copy when it has the schema's type."""
        import pyarrow as pa

        target = arrow_schema().field(name).type
        dtype = _NP_TYPES[COLUMN_TYPES[name]]
        if col.type != target:
            try:
                col = col.cast(target, safe=True)
            except pa.ArrowException:
                raise self._fail(
                    start + _first_misfit(col, target),
                    f"{name} {_misfit_value(col, target)} does not fit {target}",
                    f"write {name} as {target}",
                ) from None
        if col.null_count == len(col):
            # Read only on rows that need the column, and none does: no memory behind it.
            return np.broadcast_to(np.zeros(1, dtype=dtype), (len(col),))
        data = col.buffers()[1]
        view = np.frombuffer(data, dtype=dtype, count=col.offset + len(col))[col.offset :]
        return view

    def _codes(self, col: pa.Array, name: str, start: int) -> np.ndarray:
        """An enumeration column as schema codes (int8); unspecified in null slots."""
        import pyarrow as pa

        allowed = ENUMS[COLUMN_TYPES[name].removeprefix("enum:")]
        if not pa.types.is_dictionary(col.type):
            col = col.dictionary_encode()
        values = col.dictionary.to_pylist()
        indices = col.indices
        if len(indices) == indices.null_count:
            return np.zeros(len(indices), dtype=np.int8)
        if tuple(values) == allowed[: len(values)] and pa.types.is_int8(indices.type):
            # The dictionary is the schema's own order (as this package writes it): the
            # indices are the codes.
            data = indices.buffers()[1]
            return np.frombuffer(data, np.int8, count=indices.offset + len(indices))[
                indices.offset :
            ]
        if indices.null_count:
            indices = indices.fill_null(len(values))
        idx = np.asarray(indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        lut = np.full(len(values) + 1, -1, dtype=np.int8)
        for i, value in enumerate(values):
            if value in allowed:
                lut[i] = allowed.index(value)
                continue
            used = idx == i
            if used.any():
                raise self._fail(
                    start + _first(used),
                    f"{name} {value!r} is unknown",
                    f"use one of {', '.join(allowed)}",
                )
        codes: np.ndarray = lut[idx]
        return codes


def _misfits(col: pa.Array, target: pa.DataType) -> np.ndarray:
    """Which values of an integer column fall outside ``target``'s range (nulls do not)."""
    info = np.iinfo(target.to_pandas_dtype())
    values = np.asarray(col.fill_null(0).to_numpy(zero_copy_only=False))
    if values.dtype.kind == "u":
        return values > info.max
    return (values < info.min) | (values > info.max)


def _first_misfit(col: pa.Array, target: pa.DataType) -> int:
    return _first(_misfits(col, target))


def _misfit_value(col: pa.Array, target: pa.DataType) -> str:
    return str(col[_first_misfit(col, target)].as_py())


def _valid(col: pa.Array) -> np.ndarray:
    """The column's validity as booleans, unpacked straight from Arrow's bitmap."""
    if col.null_count == 0:
        return np.ones(len(col), dtype=bool)
    bitmap = col.buffers()[0]
    if bitmap is None:  # pragma: no cover - null_count > 0 implies a bitmap for these types
        return np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    bits = np.unpackbits(np.frombuffer(bitmap, dtype=np.uint8), bitorder="little")
    return bits[col.offset : col.offset + len(col)].view(bool)


def _first(mask: np.ndarray) -> int:
    return int(np.argmax(mask))
