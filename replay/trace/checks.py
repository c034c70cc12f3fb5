"""Row checks of a trace: every row of a record batch against the schema's rules.

The reader hands each Arrow record batch here; a row that breaks a rule (order of ``t_ns``, a
column its event kind needs, a VM or vCPU the footer does not declare, a value out of range) is
one error naming the row. Columns are viewed, not copied, wherever Arrow allows.
"""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

from replay.errors import TraceDataError
from replay.trace.schema import (
    COLUMN_TYPES,
    COLUMNS,
    ENUMS,
    EVENT_CODE,
    EVENT_KINDS,
    PAGE_SHIFT,
    PAGE_SIZE,
    PRIORITY_MAX,
    REQUIRED_BY_EVENT,
    SAMPLED_COVERAGES,
    arrow_schema,
)

if TYPE_CHECKING:
    from pathlib import Path

    import pyarrow as pa

    from replay.trace.schema import TraceMeta


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


_INT_COLUMNS = (
    "vm",
    "vcpu",
    "gpa",
    "len",
    "priority",
    "nid",
    "nr_to_scan",
    "nr_accesses",
    "window_ns",
    "sample_ns",
    "age",
)


class RowChecker:
    """Turns record batches into :class:`EventBatch` es, checking every row.

    Columns are viewed, not copied, wherever Arrow allows; a value in a null slot is left as
    Arrow stored it, since every consumer reads a column only on rows whose kind requires it,
    and this checker has made sure those rows are not null.
    """

    def __init__(self, path: Path, meta: TraceMeta) -> None:
        self.path = path
        self.meta = meta
        self.last_t: int | None = None
        # vcpus_of[vm id] = number of vCPUs, 0 for an id the footer does not declare.
        self.vcpus_of = np.zeros(0x10000, dtype=np.int32)
        for vm in meta.vms:
            self.vcpus_of[vm.id] = vm.vcpus
        ids = sorted(vm.id for vm in meta.vms)
        self._n_vms = len(ids)
        self._vcpus = meta.vms[0].vcpus
        self._dense = ids == list(range(len(ids))) and all(
            vm.vcpus == self._vcpus for vm in meta.vms
        )

    @cached_property
    def _slots(self) -> tuple[np.ndarray, np.ndarray]:
        """Every memslot as packed (VM id, gfn) keys [start, end), sorted (region rows)."""
        rows = sorted(
            ((v.id << 40) | s.gfn_start, (v.id << 40) | (s.gfn_start + s.npages))
            for v in self.meta.vms
            for s in v.memslots
        )
        keys = np.array(rows, dtype=np.uint64).reshape(-1, 2)
        return keys[:, 0].copy(), keys[:, 1].copy()

    def _fail(self, row: int, what: str, fix: str) -> TraceDataError:
        return TraceDataError(f"trace {self.path}, row {row}: {what}; {fix}")

    def check(self, rb: pa.RecordBatch, start: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Check a record batch's rows (``start`` is its first row's number).

        Returns its columns as numpy arrays and the rows that are not accesses.
        """
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
        out = {name: self._ints(cols[name], name, start) for name in _INT_COLUMNS}
        op = self._codes(cols["op"], "op", start)
        source = self._codes(cols["source"], "source", start)

        access, unmap, zap_all = EVENT_CODE["access"], EVENT_CODE["unmap"], EVENT_CODE["zap_all"]
        with_vm = counts[access] + counts[unmap] + counts[zap_all] + counts[EVENT_CODE["region"]]
        if with_vm and not self._plainly_valid(out):
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
        self._check_sampled(event, counts, out, start)
        columns = {"t_ns": t_ns, "event": event, "op": op, "source": source, **out}
        return columns, host_rows

    def _check_sampled(
        self, event: np.ndarray, counts: np.ndarray, out: dict[str, np.ndarray], start: int
    ) -> None:
        """Region rows only in sampled coverages and valid; no access rows in ``sampled``."""
        region, access = EVENT_CODE["region"], EVENT_CODE["access"]
        coverage = self.meta.coverage
        if counts[region] and coverage not in SAMPLED_COVERAGES:
            raise self._fail(
                start + _first(event == region),
                f"a region row in a {coverage!r} trace (schema version {self.meta.schema_version})",
                "region rows need a version 2 trace of coverage 'sampled' or 'faults+sampled'",
            )
        if counts[access] and coverage == "sampled":
            raise self._fail(
                start + _first(event == access),
                "an access row in a 'sampled' trace",
                "a trace of region rows and logged faults has coverage 'faults+sampled'",
            )
        if counts[region]:
            self._check_regions(event, out, start)

    def _check_regions(self, event: np.ndarray, out: dict[str, np.ndarray], start: int) -> None:
        """Check region rows: whole pages inside one memslot, counts in range.

        A region must lie inside one memslot of its VM: the converter writes a region spanning
        several slots as one row per piece and counts the parts outside every slot (the VMM's
        own memory), so a row reaching outside is a damaged or hand-made trace.
        """
        rows = np.flatnonzero(event == EVENT_CODE["region"])
        gpa, length = out["gpa"][rows], out["len"][rows]
        window, sample = out["window_ns"][rows], out["sample_ns"][rows]
        page = np.uint64(PAGE_SIZE - 1)

        def fail(bad: np.ndarray, what: str, fix: str) -> None:
            if bad.any():
                i = int(rows[_first(bad)])
                raise self._fail(start + i, what.format(i=i), fix)

        fail((gpa & page) != 0, "region gpa is not page aligned", "give the region's first byte")
        fail(
            (length == 0) | ((length & page) != 0),
            "region len is not a positive multiple of 4096",
            "give the region's length in whole pages",
        )
        fail(
            (sample == 0) | (window < sample),
            "region sample_ns is 0 or above window_ns",
            "give the sampling interval and the (longer) aggregation interval in ns",
        )
        nr_max = window // np.maximum(sample, np.uint64(1))
        fail(
            out["nr_accesses"][rows] > nr_max,
            "region nr_accesses is above window_ns / sample_ns, the checks in its window",
            "give the intervals the record was made with",
        )
        starts, ends = self._slots
        key = (out["vm"][rows].astype(np.uint64) << np.uint64(40)) | (gpa >> np.uint64(PAGE_SHIFT))
        slot = np.searchsorted(starts, key, side="right") - 1
        last = key + (length >> np.uint64(PAGE_SHIFT))
        inside = (slot >= 0) & (last <= ends[np.maximum(slot, 0)]) & (gpa < np.uint64(1 << 52))
        fail(
            ~inside,
            "region is not inside one memslot of its VM",
            "split regions at memslot edges and leave out the parts outside every memslot "
            "(replay convert does)",
        )

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
