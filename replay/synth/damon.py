"""What DAMON would have recorded of a synthetic all-accesses trace: its monitor, emulated.

``replay synth SCENARIO --as damon`` renders this (``replay.synth.damonrender``). The monitor
follows the kernel's ``mm/damon/core.c`` (``kdamond_fn``) for one context whose targets are the
VMs' VMM processes (``vaddr``: host virtual addresses; the memslots sit at :func:`hva_start`):

- every sampling interval (5 ms), one random page of each region is checked for an access since
  the previous check (``damon_va_prepare_access_checks`` / ``damon_va_check_accesses``), and
  the region's ``nr_accesses`` counts the checks that found one;
- every aggregation interval (100 ms), adjacent regions whose ``nr_accesses`` differ by at most
  ``max_nr_accesses / 10`` merge, while the merged size stays within the total size over
  ``min_nr_regions`` (``kdamond_merge_regions``: the threshold doubles while there are more than
  ``max_nr_regions`` regions), the merged count being the size-weighted mean; ``age`` counts the
  aggregations a region's count stayed within the threshold; then the regions are reported
  (``damon_aggregated``, ``kdamond_reset_aggregated``) and, while there are at most half of
  ``max_nr_regions``, each is split in two (three when the count did not change since the last
  split and is under a third of the maximum) at a random 10 % to 90 % of its size
  (``kdamond_split_regions``).

The initial regions are the VM's memslots (``vaddr`` starts from the mapped areas), each split
evenly so that the context has at least ``min_nr_regions``. Accesses are numpy arrays; a check
is one binary search in the sorted (sampling interval, page) pairs of the accesses, so the
emulation costs a sort of the accesses plus a few array passes per aggregation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Iterator

    from replay.trace.schema import TraceMeta, VmSpec

PAGE = 4096
HVA_BASE = 0x7F00_0000_0000
"""Where the rendered VMMs map guest RAM: VM i's memslot at ``HVA_BASE - i * 2**38 + gpa``
(each VMM its own 256 GiB, below the top of x86-64 user space, for up to 500 VMs)."""


def hva_start(vm_index: int, gpa_start: int) -> int:
    """The host virtual address a rendered VMM maps a memslot starting at ``gpa_start`` at."""
    return HVA_BASE - (vm_index << 38) + gpa_start


@dataclass(frozen=True)
class MonitorSettings:
    """DAMON's monitoring attributes (damo's defaults)."""

    sample_us: int = 5_000
    aggr_us: int = 100_000
    min_nr_regions: int = 10
    max_nr_regions: int = 1_000
    seed: int = 0

    @property
    def samples(self) -> int:
        """Sampling checks per aggregation window: ``max_nr_accesses``."""
        return self.aggr_us // self.sample_us


@dataclass
class Aggregation:
    """The regions of every target at the end of one aggregation window, as DAMON reports them."""

    t_end_ns: int
    target: np.ndarray
    start: np.ndarray
    """First byte (host virtual address)."""
    end: np.ndarray
    nr_accesses: np.ndarray
    age: np.ndarray


@dataclass
class _Regions:
    target: np.ndarray
    start: np.ndarray  # pages
    end: np.ndarray
    nr: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    last_nr: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    age: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))


def _initial(vms: tuple[VmSpec, ...], min_regions: int) -> _Regions:
    """The memslots of every VM as regions, split evenly to at least ``min_regions`` in all."""
    spans = [
        (ti, hva_start(ti, s.gpa_start) // PAGE, hva_start(ti, s.gpa_end) // PAGE)
        for ti, vm in enumerate(vms)
        for s in sorted(vm.memslots, key=lambda s: s.gpa_start)
    ]
    total = sum(b - a for _, a, b in spans)
    target, start, end = [], [], []
    for ti, a, b in spans:
        pieces = max(1, min(b - a, -(-min_regions * (b - a) // total)))
        cuts = a + (np.arange(pieces + 1) * (b - a)) // pieces
        target += [ti] * pieces
        start += cuts[:-1].tolist()
        end += cuts[1:].tolist()
    n = len(start)
    zeros = np.zeros(n, dtype=np.int64)
    return _Regions(
        np.array(target, dtype=np.int64),
        np.array(start, dtype=np.int64),
        np.array(end, dtype=np.int64),
        zeros.copy(),
        zeros.copy(),
        zeros.copy(),
    )


def access_keys(
    meta: TraceMeta, t_ns: np.ndarray, vm: np.ndarray, gpa: np.ndarray, t0: int, sample_ns: int
) -> np.ndarray:
    """Sorted (sampling interval << 36 | host page) of the accesses inside memslots.

    Duplicates stay: a check only asks whether a key is there, and a sort of keys already in
    time order is cheap where a unique (numpy's hash-based one) is not.
    """
    keys = []
    index = {v.id: i for i, v in enumerate(meta.vms)}
    for v in meta.vms:
        mine = vm == v.id
        g = gpa[mine]
        t = t_ns[mine]
        for s in v.memslots:
            inside = (g >= s.gpa_start) & (g < s.gpa_end)
            page = (g[inside] + np.uint64(hva_start(index[v.id], s.gpa_start) - s.gpa_start)) >> 12
            interval = (t[inside] - t0) // sample_ns
            keys.append((interval.astype(np.uint64) << np.uint64(36)) | page.astype(np.uint64))
    if not keys:
        return np.zeros(0, dtype=np.uint64)
    out = np.concatenate(keys)
    out.sort()
    return out


class Monitor:
    """DAMON's monitor over the accesses of a trace (module docstring)."""

    def __init__(self, meta: TraceMeta, settings: MonitorSettings) -> None:
        self.meta = meta
        self.settings = settings
        self.rng = np.random.default_rng(settings.seed)
        self.regions = _initial(meta.vms, settings.min_nr_regions)
        self.total_pages = int((self.regions.end - self.regions.start).sum())
        self._last_nr_regions = 0

    def run(self, keys: np.ndarray, t0: int, t_end: int) -> Iterator[Aggregation]:
        """Yield every aggregation from ``t0`` until the last window that ends by ``t_end``."""
        st = self.settings
        aggr_ns = st.aggr_us * 1000
        n_windows = max(0, (t_end - t0) // aggr_ns)
        for w in range(n_windows):
            first = w * st.samples
            self._sample(keys, first, st.samples)
            self._merge()
            r = self.regions
            yield Aggregation(
                t0 + (w + 1) * aggr_ns,
                r.target.copy(),
                r.start * PAGE,
                r.end * PAGE,
                r.nr.copy(),
                r.age.copy(),
            )
            r.last_nr = r.nr
            r.nr = np.zeros_like(r.nr)
            self._split()

    def _sample(self, keys: np.ndarray, first: int, samples: int) -> None:
        """Check one random page per region per sampling interval: was it accessed in it."""
        r = self.regions
        size = r.end - r.start
        pages = r.start[None, :] + (self.rng.random((samples, len(size))) * size).astype(np.int64)
        interval = (np.arange(first, first + samples, dtype=np.uint64))[:, None]
        query = (interval << np.uint64(36)) | pages.astype(np.uint64)
        pos = np.searchsorted(keys, query.ravel())
        found = pos < len(keys)
        found[found] = keys[pos[found]] == query.ravel()[found]
        r.nr = r.nr + found.reshape(samples, -1).sum(axis=0)

    def _merge(self) -> None:
        """``kdamond_merge_regions``: merge alike neighbours; the threshold doubles if too many."""
        st = self.settings
        threshold = max(1, st.samples // 10)
        sz_limit = max(1, self.total_pages // st.min_nr_regions)
        while True:
            self._merge_once(threshold, sz_limit)
            if len(self.regions.start) <= st.max_nr_regions or threshold >= st.samples:
                return
            threshold = max(1, threshold * 2)

    def _merge_once(self, thres: int, sz_limit: int) -> None:
        r = self.regions
        r.age = np.where(np.abs(r.nr - r.last_nr) > thres, 0, r.age + 1)
        # damon_merge_regions_of walks the regions in order, merging each into the one before
        # when they touch, are alike and fit: a sequential rule, so a loop over the few regions.
        keep: list[int] = []
        start, end = r.start.tolist(), r.end.tolist()
        nr, age, target = r.nr.tolist(), r.age.tolist(), r.target.tolist()
        last_nr = r.last_nr.tolist()
        out_end: list[int] = []
        out_nr: list[int] = []
        out_age: list[int] = []
        for i in range(len(start)):
            if keep:
                p = len(keep) - 1
                j = keep[-1]
                sz_p, sz_i = out_end[p] - start[j], end[i] - start[i]
                if (
                    target[j] == target[i]
                    and out_end[p] == start[i]
                    and abs(out_nr[p] - nr[i]) <= thres
                    and sz_p + sz_i <= sz_limit
                ):
                    out_nr[p] = (out_nr[p] * sz_p + nr[i] * sz_i) // (sz_p + sz_i)
                    out_age[p] = (out_age[p] * sz_p + age[i] * sz_i) // (sz_p + sz_i)
                    out_end[p] = end[i]
                    continue
            keep.append(i)
            out_end.append(end[i])
            out_nr.append(nr[i])
            out_age.append(age[i])
        idx = np.array(keep, dtype=np.int64)
        r.target, r.start = r.target[idx], r.start[idx]
        r.end = np.array(out_end, dtype=np.int64)
        r.nr = np.array(out_nr, dtype=np.int64)
        r.age = np.array(out_age, dtype=np.int64)
        r.last_nr = np.array(last_nr, dtype=np.int64)[idx]

    def _split(self) -> None:
        """``kdamond_split_regions``: split each region at random 10 % to 90 % points."""
        st = self.settings
        r = self.regions
        n = len(r.start)
        if n > st.max_nr_regions // 2:
            return
        subs = 3 if self._last_nr_regions == n and n < st.max_nr_regions // 3 else 2
        self._last_nr_regions = n
        fresh = np.zeros(n, dtype=bool)
        for _ in range(subs - 1):
            # Each round splits the region, or the left piece the round before left, once, as
            # the kernel's loop does: the left piece keeps the start, a new one gets the rest.
            size = r.end - r.start
            frac = self.rng.integers(1, 10, size=len(size))
            sub = (frac * size) // 10
            ok = ~fresh & (size > 2) & (sub > 0) & (sub < size)
            idx = np.flatnonzero(ok)
            at = r.start[idx] + sub[idx]
            order = np.argsort(np.concatenate([np.arange(len(size)), idx]), kind="stable")
            pos = np.concatenate([np.arange(len(size)), idx])[order]
            is_new = np.concatenate([np.zeros(len(size), bool), np.ones(len(idx), bool)])[order]
            new_start = np.where(is_new, np.concatenate([r.start, at])[order], 0)
            new_end = np.concatenate([r.end, r.end[idx]])[order]
            left_end = r.end.copy()
            left_end[idx] = at
            start = np.where(is_new, new_start, r.start[pos])
            end = np.where(is_new, new_end, left_end[pos])
            r.target, r.start, r.end = r.target[pos], start, end
            r.nr, r.last_nr, r.age = r.nr[pos], r.last_nr[pos], r.age[pos]
            fresh = fresh[pos] | is_new
