"""One vCPU's access stream: when it accesses, where, and how, in vectorized chunks.

A vCPU's accesses are spread over the scenario's duration so that its count up to time t is
``round(C(t))``, where ``C`` integrates the phases' rates (scaled to meet a total, if one was
asked for). Inside each stretch the times are sorted uniform draws (the normalised cumulative sum
of exponential gaps, which needs no sort), so the stream is as random as a Poisson process yet
its totals are exact and the same whatever the chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from replay.errors import ScenarioError
from replay.trace.schema import PAGE_SHIFT

if TYPE_CHECKING:
    from replay.synth.scenario import Phase, VmPlan


def zipf_ranks(u: np.ndarray, n: int, exponent: float) -> np.ndarray:
    """Map uniform draws ``u`` to ranks 0..n-1 with probability falling as ``rank ** -exponent``.

    The inverse CDF of the continuous density ``x ** -exponent`` on ``[1, n + 1)``, floored: one
    power per draw instead of a binary search over an n-entry table (log n scattered reads per
    draw). It matches the discrete Zipf law closely except for the first few ranks.
    """
    if abs(exponent - 1.0) < 1e-9:
        x = np.power(float(n + 1), u)
    else:
        a = 1.0 - exponent
        x = np.power(1.0 + u * ((n + 1.0) ** a - 1.0), 1.0 / a)
    ranks: np.ndarray = np.minimum(x.astype(np.int64) - 1, n - 1)
    return ranks


def _coprime_multiplier(span: int, rng: np.random.Generator) -> int:
    """A multiplier coprime with ``span``: rank -> (rank * m) % span is then a bijection."""
    m = int(rng.integers(span // 3 + 1, max(span // 3 + 2, span))) | 1
    while math.gcd(m, span) != 1:
        m += 2
    return m


@dataclass
class PhaseStream:
    """A phase bound to one vCPU: its absolute time span and its position state."""

    phase: Phase
    start_ns: int
    end_ns: int
    count_at_start: float
    """Scaled expected count of the vCPU's accesses before this phase."""
    rate_per_ns: float
    """Scaled accesses per nanosecond."""
    first_page: int
    pages: int
    multiplier: int
    position: int = 0


@dataclass
class VcpuStream:
    """Everything needed to produce one vCPU's accesses chunk by chunk."""

    vm_id: int
    vcpu: int
    vm: VmPlan
    phases: list[PhaseStream]
    rng: np.random.Generator
    slot_first_page: np.ndarray = field(init=False)
    slot_gfn: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        sizes = np.array([s.npages for s in self.vm.memslots], dtype=np.int64)
        self.slot_first_page = np.concatenate(([0], np.cumsum(sizes)[:-1]))
        self.slot_gfn = np.array([s.gfn_start for s in self.vm.memslots], dtype=np.int64)

    @property
    def expected_total(self) -> float:
        """Scaled expected count over the whole duration."""
        last = self.phases[-1]
        return last.count_at_start + last.rate_per_ns * (last.end_ns - last.start_ns)

    def rescale(self, factor: float) -> None:
        """Multiply every rate by ``factor`` (to meet a requested total)."""
        for p in self.phases:
            p.count_at_start *= factor
            p.rate_per_ns *= factor

    def count_before(self, t_ns: int) -> int:
        """Number of this vCPU's accesses with time < ``t_ns``."""
        for p in reversed(self.phases):
            if t_ns >= p.start_ns:
                c = p.count_at_start + p.rate_per_ns * (min(t_ns, p.end_ns) - p.start_ns)
                return math.floor(c + 0.5)
        return 0

    def chunk(self, lo_ns: int, hi_ns: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This vCPU's accesses with ``lo_ns <= t < hi_ns``: times, gpas and op codes."""
        times, gpas, ops = [], [], []
        for p in self.phases:
            a, b = max(lo_ns, p.start_ns), min(hi_ns, p.end_ns)
            if a >= b:
                continue
            k = self.count_before(b) - self.count_before(a)
            if k <= 0:
                continue
            t = self._times(a, b, k)
            times.append(t)
            gpas.append(self._gpas(p, t, k))
            ops.append(self._ops(p.phase, k))
        if not times:
            empty = np.empty(0, dtype=np.int64)
            return empty, empty.astype(np.uint64), empty.astype(np.int8)
        if len(times) == 1:
            return times[0], gpas[0], ops[0]
        return np.concatenate(times), np.concatenate(gpas), np.concatenate(ops)

    def _times(self, a: int, b: int, k: int) -> np.ndarray:
        """Draw ``k`` sorted uniform times in ``[a, b)``.

        Uniform order statistics are the normalised cumulative sum of ``k + 1`` exponential gaps:
        sorted without a sort.
        """
        gaps = self.rng.standard_exponential(k + 1)
        cumulative = np.cumsum(gaps)
        frac = cumulative[:k] / cumulative[k]
        times: np.ndarray = a + (frac * (b - a)).astype(np.int64)
        return times

    def _gpas(self, ps: PhaseStream, t_ns: np.ndarray, k: int) -> np.ndarray:
        phase = ps.phase
        match phase.kind:
            case "uniform":
                page = self.rng.integers(0, ps.pages, k)
            case "zipf":
                rank = zipf_ranks(self.rng.random(k), phase.hot_pages, phase.exponent)
                # Hot ranks land spread over the footprint (scatter) or packed at its start.
                page = (rank * ps.multiplier) % ps.pages if phase.scatter else rank
            case "sequential":
                page = (ps.position + phase.stride_pages * np.arange(k, dtype=np.int64)) % ps.pages
                ps.position = int((ps.position + phase.stride_pages * k) % ps.pages)
            case "drift":
                ws_pages = max(1, phase.working_set >> PAGE_SHIFT)
                drift_pages_per_ns = phase.drift / 4096 / 1e9
                base = ((t_ns - ps.start_ns) * drift_pages_per_ns).astype(np.int64)
                page = (base + self.rng.integers(0, ws_pages, k)) % ps.pages
            case _:  # pragma: no cover - the parser admits only the kinds above
                raise AssertionError(phase.kind)
        ram_page = ps.first_page + page.astype(np.int64)
        # Map the page of the VM's RAM (memslots concatenated in order) to its gfn.
        if len(self.slot_gfn) == 1:
            gfn = self.slot_gfn[0] + ram_page
        else:
            slot = np.searchsorted(self.slot_first_page, ram_page, side="right") - 1
            gfn = self.slot_gfn[slot] + ram_page - self.slot_first_page[slot]
        gpa: np.ndarray = gfn.astype(np.uint64) << np.uint64(PAGE_SHIFT)
        if phase.mmio_fraction > 0:
            gpa[self.rng.random(k) < phase.mmio_fraction] = self.vm.mmio_gpa
        return gpa

    def _ops(self, phase: Phase, k: int) -> np.ndarray:
        read, write, _ = phase.mix
        if read == 1.0:
            return np.zeros(k, dtype=np.int8)
        thresholds = np.array([read, read + write])
        return np.searchsorted(thresholds, self.rng.random(k), side="right").astype(np.int8)


def vcpu_streams(
    vm_id: int, vm: VmPlan, duration_ns: int, rngs: list[np.random.Generator]
) -> list[VcpuStream]:
    """Bind each vCPU of ``vm`` to the workload that drives it (the first that names it)."""
    streams = []
    driver = [
        next(w for w in vm.workloads if w.vcpus is None or vcpu in w.vcpus)
        for vcpu in range(vm.vcpus)
    ]
    for vcpu in range(vm.vcpus):
        workload = driver[vcpu]
        # A partitioned workload splits its footprint among the vCPUs it drives, in id order.
        members = [v for v in range(vm.vcpus) if driver[v] is workload]
        share, slice_no = (len(members), members.index(vcpu)) if workload.partition else (1, 0)
        rng = rngs[vcpu]
        phases: list[PhaseStream] = []
        count = 0.0
        for i, ph in enumerate(workload.phases):
            start = min(round(ph.at_s * 1e9), duration_ns)
            nxt = workload.phases[i + 1].at_s if i + 1 < len(workload.phases) else None
            end = duration_ns if nxt is None else min(round(nxt * 1e9), duration_ns)
            ram = sum(s.size for s in vm.memslots)
            span = (ph.footprint if ph.footprint is not None else ram - ph.offset) >> PAGE_SHIFT
            pages = span // share
            if pages < 1:
                raise ScenarioError(
                    f"VM {vm.name}: a partitioned footprint of {span} pages cannot give each of "
                    f"its {share} vCPUs a page; enlarge the footprint"
                )
            per_ns = ph.rate / 1e9
            phases.append(
                PhaseStream(
                    phase=ph,
                    start_ns=start,
                    end_ns=end,
                    count_at_start=count,
                    rate_per_ns=per_ns,
                    first_page=(ph.offset >> PAGE_SHIFT) + slice_no * pages,
                    pages=pages,
                    multiplier=_coprime_multiplier(pages, rng),
                )
            )
            count += per_ns * max(0, end - start)
        streams.append(VcpuStream(vm_id, vcpu, vm, phases, rng))
    return streams
