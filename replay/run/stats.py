"""A run's fault statistics, accumulated as the fault rows stream past (MODEL.md rule 19).

:class:`FaultStats` is fed each chunk of fault rows as the fault sink hands it on, and follows
the engine's two removal logs; it keeps per-vCPU blocks of counts and sums, running peaks of
page-table and cache pages, per-bucket counts for the timeline and per-vCPU cache changes.
Everything is derived from the fault rows and the two logs, so both engines' statistics agree
whenever their rows do. :mod:`.summary` turns them into ``summary.json``'s blocks, the timeline
and the cache levels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from replay._arrays import stable_order, starts_of_runs
from replay.mmu.config import ATTRIBUTIONS, CAUSES, REFILLS, Attribution, Cause, CostModel
from replay.mmu.results import empty_chunk
from replay.run.schema import TIMELINE_COLUMNS

if TYPE_CHECKING:
    from replay.trace.schema import VmSpec


def refill_part_ns(faults: dict[str, np.ndarray], costs: CostModel) -> np.ndarray:
    """The refill share of each fault's ``est_ns`` (rule 31): pages refilled x the rate used."""
    flush = np.where(faults["recycled_sps"] > 0, costs.zap_flush_ns, 0)
    base = np.where(
        faults["cause"] == Cause.MMIO,
        costs.fault_base_ns,
        costs.fault_base_ns + costs.sp_alloc_ns * faults["new_sps"].astype(np.int64),
    )
    part: np.ndarray = faults["est_ns"] - base - flush
    return part


def running_within_groups(group: np.ndarray, deltas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running totals of ``deltas`` restarting at each group, for rows sorted by group.

    Returns the running totals and the index where each group starts.
    """
    running = np.cumsum(deltas)
    first = np.ones(len(group), dtype=bool)
    first[1:] = group[1:] != group[:-1]
    starts = np.flatnonzero(first)
    before = running[starts] - deltas[starts]
    running -= np.repeat(before, np.diff(np.append(starts, len(group))))
    return running, starts


class _Peaks:
    """Per group, the largest running total after any event; never below 0.

    Fed in trace-row order a chunk at a time; the events of one row count as one.
    """

    def __init__(self, n_groups: int) -> None:
        self.level = np.zeros(n_groups, dtype=np.int64)
        self.peak = np.zeros(n_groups, dtype=np.int64)

    def feed(
        self,
        group: np.ndarray,
        rows: np.ndarray,
        deltas: np.ndarray,
        by_row: np.ndarray | None = None,
        *,
        ordered: bool = False,
    ) -> None:
        """Add a chunk's changes.

        ``by_row``, if given, is the stable order of ``rows``; ``ordered`` says the rows are in
        order already.
        """
        if not len(rows):
            return
        if ordered:
            by_row = None
        elif by_row is None:
            by_row = np.argsort(rows, kind="stable")
        if len(self.level) == 1:
            self._feed_one(rows, deltas, by_row)
            return
        # By group, then row: a stable sort by group of the rows already in order.
        order = stable_order(group) if by_row is None else by_row[stable_order(group[by_row])]
        g, r, d = group[order], rows[order], deltas[order]
        running, starts = running_within_groups(g, d)
        # Carried on from earlier chunks.
        running += np.repeat(self.level[g[starts]], np.diff(np.append(starts, len(g))))
        last_of_row = np.ones(len(g), dtype=bool)
        last_of_row[:-1] = (r[1:] != r[:-1]) | (g[1:] != g[:-1])
        masked = np.where(last_of_row, running, np.iinfo(np.int64).min)
        top = np.maximum.reduceat(masked, starts)
        self.peak[g[starts]] = np.maximum(self.peak[g[starts]], top)
        np.add.at(self.level, g[starts], np.add.reduceat(d, starts))

    def _feed_one(self, rows: np.ndarray, deltas: np.ndarray, by_row: np.ndarray | None) -> None:
        """``feed`` for a single group: no sorting by group (``by_row`` None: in order)."""
        if by_row is not None:
            rows, deltas = rows[by_row], deltas[by_row]
        running = np.cumsum(deltas)
        running += self.level[0]
        last_of_row = np.ones(len(rows), dtype=bool)
        last_of_row[:-1] = rows[1:] != rows[:-1]
        self.peak[0] = max(int(self.peak[0]), int(running[last_of_row].max()))
        self.level[0] = running[-1]


class Blocks:
    """Fault statistics of rule 19 for every group at once, accumulated chunk by chunk."""

    def __init__(self, n: int, costs: CostModel) -> None:
        self.n = n
        self.costs = costs
        self.faults = np.zeros(n, dtype=np.int64)
        self.by_attr = np.zeros((n, len(ATTRIBUTIONS)), dtype=np.int64)
        self.by_cause = np.zeros((n, len(CAUSES)), dtype=np.int64)
        self.by_refill = np.zeros((n, len(REFILLS)), dtype=np.int64)
        self.sums = {name: np.zeros(n, dtype=np.int64) for name in _SUMS}
        self.stall = {name: np.zeros(n, dtype=np.int64) for name in ATTRIBUTIONS}

    def add(self, faults: dict[str, np.ndarray], group: np.ndarray) -> None:
        """Add a chunk of fault rows, each to its group in ``group``."""
        n = self.n
        attr = faults["attribution"].astype(np.int64)
        self.faults += np.bincount(group, minlength=n)
        for table, codes in (
            (self.by_attr, attr),
            (self.by_cause, faults["cause"]),
            (self.by_refill, faults["refill"]),
        ):
            k = table.shape[1]
            table += np.bincount(group * k + codes.astype(np.int64), minlength=n * k).reshape(n, k)
        for name, col in _SUMS.items():
            self.sums[name] += _sum(group, faults[col], n)
        est = faults["est_ns"]
        refill = refill_part_ns(faults, self.costs)
        self.stall["zapped_page_tables"] += _sum(
            group, np.where(attr == Attribution.ZAPPED_PAGE_TABLES, est, 0), n
        )
        self.stall["cache_eviction"] += _sum(
            group, np.where(attr == Attribution.CACHE_EVICTION, refill, 0), n
        )
        self.stall["none"] += _sum(group, np.where(attr == Attribution.NONE, est, 0), n)

    def rollup(self, starts: np.ndarray) -> Blocks:
        """The blocks of runs of consecutive groups, each beginning at one of ``starts``.

        Every count and sum here adds up: a VM's is the sum of its vCPUs', the whole trace's the
        sum of every VM's.
        """
        out = Blocks(len(starts), self.costs)
        out.faults = np.add.reduceat(self.faults, starts)
        out.by_attr = np.add.reduceat(self.by_attr, starts, axis=0)
        out.by_cause = np.add.reduceat(self.by_cause, starts, axis=0)
        out.by_refill = np.add.reduceat(self.by_refill, starts, axis=0)
        out.sums = {k: np.add.reduceat(v, starts) for k, v in self.sums.items()}
        out.stall = {k: np.add.reduceat(v, starts) for k, v in self.stall.items()}
        return out

    def block(self, i: int) -> dict[str, Any]:
        """Group ``i``'s statistics, as a block of ``summary.json``."""
        return {
            "faults": int(self.faults[i]),
            "faults_by_attribution": dict(zip(ATTRIBUTIONS, self.by_attr[i].tolist(), strict=True)),
            "faults_by_cause": dict(zip(CAUSES, self.by_cause[i].tolist(), strict=True)),
            "refills_by_kind": dict(zip(REFILLS, self.by_refill[i].tolist(), strict=True)),
            **{name: int(v[i]) for name, v in self.sums.items()},
            "stall_ns_by_attribution": {k: int(v[i]) for k, v in self.stall.items()},
        }


_SUMS = {
    "pages_refilled": "pages_refilled",
    "sps_allocated": "new_sps",
    "sps_relinked": "relinked_sps",
    "sps_recycled": "recycled_sps",
}


def _sum(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Integer sums per group (float64 weights are exact below 2**53)."""
    got = np.bincount(group, weights=values.astype(np.float64), minlength=n)
    return np.rint(got).astype(np.int64)


class _Groups:
    """Dense VM and vCPU group ids of a trace's VM table."""

    def __init__(self, vms: tuple[VmSpec, ...]) -> None:
        self.vms = vms
        self.n_vms = len(vms)
        self.vm_index = np.zeros(0x10000, dtype=np.int64)
        self.vcpu_base = np.zeros(self.n_vms, dtype=np.int64)
        total = 0
        for i, vm in enumerate(vms):
            self.vm_index[vm.id] = i
            self.vcpu_base[i] = total
            total += vm.vcpus
        self.n_vcpus = total

    def of(self, vm: np.ndarray, vcpu: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        vi = self.vm_index[vm]
        vc = self.vcpu_base[vi] + (vcpu.astype(np.int64) if vcpu is not None else 0)
        return vi, vc


_NOT_FROM_FAULTS = ("t_start_ns", "accesses", "pages_freed", "scan_calls", "reclaim_passes")
BUCKETED = (
    *(c for c in TIMELINE_COLUMNS[:-2] if c not in _NOT_FROM_FAULTS),
    "sp_change",
    "cache_change",
)
"""What the timeline counts per time bucket from the fault rows; its two page-count columns
(the last two) are running sums of the two changes, less the removals."""


class _Log:
    """An engine's removal log, taken in row order while the engine may still append to it.

    Entries are ``width`` integers, the first a trace row.
    """

    def __init__(self, width: int) -> None:
        self.width = width
        self.entries: list[tuple[int, ...]] = []
        self.taken = 0
        self.carry = np.zeros((0, width), dtype=np.int64)

    def upto(self, row: int) -> np.ndarray:
        """The entries at rows up to ``row`` not taken before, in row order (stable)."""
        n = len(self.entries)  # appends after this point wait for a later call
        new = np.array(self.entries[self.taken : n], dtype=np.int64).reshape(-1, self.width)
        self.taken = n
        both = np.concatenate([self.carry, new]) if len(self.carry) else new
        both = both[np.argsort(both[:, 0], kind="stable")]
        k = int(np.searchsorted(both[:, 0], row, side="right"))
        self.carry = both[k:]
        return both[:k]

    def all(self) -> np.ndarray:
        """Every entry, in row order (stable)."""
        rows = np.array(self.entries, dtype=np.int64).reshape(-1, self.width)
        return rows[np.argsort(rows[:, 0], kind="stable")]


class FaultStats:
    """What a run's summary, timeline and cache levels take from its faults and removals.

    It is accumulated a chunk of fault rows at a time, in trace order. A fault sink feeds it
    every row group as it hands the group to its writer thread, so this work overlaps the
    replay instead of reading the fault file back after it. A chunk ending at trace row R takes
    every removal logged at rows up to R: an engine logs a removal before it adds any fault at
    that row or after it (a page-limit zap comes before its fault), so they are all logged by
    the time the chunk is handed on. Feeding only adds up, so the result does not depend on how
    the rows were chunked.
    """

    def __init__(self, vms: tuple[VmSpec, ...], costs: CostModel, bucket_ns: int) -> None:
        self.groups = groups = _Groups(vms)
        self.costs = costs
        self.bucket_ns = bucket_ns
        self.t0 = 0
        """The trace's first time (timeline buckets count from it); set before any fault."""
        self.sp_log = _Log(4)
        """``(row, t_ns, vm, sps)`` per removal of SPs: the engine's ``sp_removals``."""
        self.cache_log = _Log(5)
        """``(row, t_ns, vm, vcpu, pages)`` per emptied cache: the engine's ``cache_frees``."""
        self.by_vcpu = Blocks(groups.n_vcpus, costs)  # VMs' and totals are summed from it
        self.sp_total, self.sp_vm = _Peaks(1), _Peaks(groups.n_vms)
        self.cache_total = _Peaks(1)
        self.cache_vm, self.cache_vcpu = _Peaks(groups.n_vms), _Peaks(groups.n_vcpus)
        self.bucketed = {name: np.zeros(0, dtype=np.int64) for name in BUCKETED}
        self.vcpu_cache = _SparseChanges()
        self._ended = False
        self.removals = self.frees = np.zeros((0, 0), dtype=np.int64)
        """The two logs whole, in row order, once ``end`` has run."""

    def attach(self, sp_removals: list[Any], cache_frees: list[Any]) -> None:
        """Follow an engine's two removal logs (lists it appends to)."""
        self.sp_log.entries, self.cache_log.entries = sp_removals, cache_frees

    def feed(self, f: dict[str, np.ndarray]) -> None:
        """Add the next chunk of fault rows (and the removals logged up to its last row)."""
        if len(f["row"]):
            self._feed(f, int(f["row"][-1]))

    def end(self) -> None:
        """Take the removals after the last fault (once the engine has finished)."""
        if not self._ended:
            self._ended = True
            self._feed(empty_chunk(), np.iinfo(np.int64).max)
            self.removals, self.frees = self.sp_log.all(), self.cache_log.all()

    def _feed(self, f: dict[str, np.ndarray], last_row: int) -> None:
        groups = self.groups
        r, fr = self.sp_log.upto(last_row), self.cache_log.upto(last_row)
        f_vi, f_vc = groups.of(f["vm"], f["vcpu"])
        r_vi, _ = groups.of(r[:, 2])
        fr_vi, fr_vc = groups.of(fr[:, 2], fr[:, 3])
        sp_rows = np.concatenate([f["row"], r[:, 0]])
        sp_delta = np.concatenate([f["new_sps"].astype(np.int64), -r[:, 3]])
        sp_group = np.concatenate([f_vi, r_vi])
        c_rows = np.concatenate([f["row"], fr[:, 0]])
        f_cache = f["pages_refilled"].astype(np.int64) - f["new_sps"].astype(np.int64)
        c_delta = np.concatenate([f_cache, -fr[:, 4]])
        # Both halves are in row order: a stable sort merges two runs in linear time, and
        # without removals (most chunks) there is nothing to merge.
        sp_by_row = np.argsort(sp_rows, kind="stable") if len(r) else None
        c_by_row = np.argsort(c_rows, kind="stable") if len(fr) else None
        for peaks, group in ((self.sp_total, sp_group), (self.sp_vm, sp_group)):
            peaks.feed(group, sp_rows, sp_delta, sp_by_row, ordered=not len(r))
        c_vi, c_vc = np.concatenate([f_vi, fr_vi]), np.concatenate([f_vc, fr_vc])
        for peaks, group in (
            (self.cache_total, c_vi),
            (self.cache_vm, c_vi),
            (self.cache_vcpu, c_vc),
        ):
            peaks.feed(group, c_rows, c_delta, c_by_row, ordered=not len(fr))
        if len(f["row"]):
            self.by_vcpu.add(f, f_vc)
            self._bucket(f, f_vc, f_cache)

    def _bucket(self, f: dict[str, np.ndarray], f_vc: np.ndarray, cache_delta: np.ndarray) -> None:
        """The timeline's per-bucket counts of a chunk of faults.

        ``cache_delta`` is each fault's change of its vCPU's cache: pages refilled less SPs.
        """
        # Faults come in time order, so their buckets are runs: sums are taken per run.
        idx = (f["t_ns"].astype(np.int64) - self.t0) // self.bucket_ns
        first, last = int(idx[0]), int(idx[-1])
        n = last + 1
        runs = np.flatnonzero(starts_of_runs(idx))
        at = idx[runs]
        attr = f["attribution"]

        def per_run(values: np.ndarray) -> np.ndarray:
            return np.add.reduceat(values.astype(np.int64), runs)

        new_sps = per_run(f["new_sps"])
        got = {
            "faults": np.diff(np.append(runs, len(idx))),
            "faults_zapped_page_tables": per_run(attr == Attribution.ZAPPED_PAGE_TABLES),
            "faults_cache_eviction": per_run(attr == Attribution.CACHE_EVICTION),
            "faults_none": per_run(attr == Attribution.NONE),
            "mmio": per_run(f["cause"] == Cause.MMIO),
            "pages_refilled": per_run(f["pages_refilled"]),
            "sps_allocated": new_sps,
            "stall_ns": per_run(f["est_ns"]),
            "sp_change": new_sps,
            "cache_change": per_run(cache_delta),
        }
        for name, add in got.items():
            self.bucketed[name] = pad(self.bucketed[name], n)
            self.bucketed[name][at] += add
        # Each vCPU's changes per bucket, summed over the chunk's few buckets first (a key that
        # occurs is kept even when its changes sum to 0: the levels list every bucket with one).
        nv = self.groups.n_vcpus
        keys = (idx - first) * nv + f_vc
        width = (last - first + 1) * nv
        if width <= 4 * len(keys):
            occurs = np.bincount(keys, minlength=width) > 0
            sums = np.bincount(keys, weights=cache_delta.astype(np.float64), minlength=width)
            local = np.flatnonzero(occurs)
            self.vcpu_cache.add(local + first * nv, np.rint(sums[local]).astype(np.int64))
        else:
            self.vcpu_cache.add(keys + first * nv, cache_delta)


def pad(a: np.ndarray, n: int) -> np.ndarray:
    """``a`` with zeros appended up to length ``n`` (as it is when long enough)."""
    return np.concatenate([a, np.zeros(n - len(a), dtype=np.int64)]) if len(a) < n else a


class _SparseChanges:
    """Sums of deltas per integer key, kept sparse and compacted as they arrive."""

    COMPACT_AT = 1 << 20

    def __init__(self) -> None:
        self.keys: list[np.ndarray] = []
        self.deltas: list[np.ndarray] = []
        self.pending = 0

    def add(self, keys: np.ndarray, deltas: np.ndarray) -> None:
        if not len(keys):
            return
        self.keys.append(np.asarray(keys, dtype=np.int64))
        self.deltas.append(np.asarray(deltas, dtype=np.int64))
        self.pending += len(keys)
        if self.pending >= self.COMPACT_AT:
            k, d = self.totals()
            self.keys, self.deltas, self.pending = [k], [d], len(k)

    def totals(
        self, extra: tuple[np.ndarray, np.ndarray] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The distinct keys, sorted, and each one's summed delta.

        ``extra`` (keys, deltas) are added in for this answer only, not kept.
        """
        keys, deltas = list(self.keys), list(self.deltas)
        if extra is not None and len(extra[0]):
            keys.append(np.asarray(extra[0], dtype=np.int64))
            deltas.append(np.asarray(extra[1], dtype=np.int64))
        if not keys:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        uniq, inverse = np.unique(np.concatenate(keys), return_inverse=True)
        sums = np.bincount(inverse, weights=np.concatenate(deltas).astype(np.float64))
        return uniq, np.rint(sums).astype(np.int64)
