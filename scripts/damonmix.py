"""A mixed host log for ``bench.py convert --damon-share``: kvm lines and DAMON lines in one file.

A rendered ftrace log (``replay synth --as ftrace``) gets ``damon_aggregated`` bursts of one
kdamond watching its first VM's VMM (vaddr), one burst per 100 ms aggregation, merged in by
time stamp, in the same column layout (so the converter's fast path meets them as it would meet
a real host's). The VM config gains that VM's ``damon_target = 0`` and its memslots'
``hva_start``, so that every region can be placed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from pathlib import Path

HVA_BASE = 0x7F00_0000_0000
AGGR_S = 0.1
SAMPLE_US, AGGR_US = 5_000, 100_000
_TS = re.compile(rb" (\d+\.\d{6}): ")


def _slots(toml: str) -> list[tuple[int, int]]:
    """(gpa_start, size) of the first VM's memslots in a rendered vms.toml."""
    first = toml.split("[[vm]]")[1]
    starts = [int(x, 16) for x in re.findall(r"gpa_start = (0x[0-9a-f]+)", first)]
    sizes = [int(x, 16) for x in re.findall(r"size = (0x[0-9a-f]+)", first)]
    return list(zip(starts, sizes, strict=True))


def mixed_config(toml: str) -> str:
    """The rendered config with DAMON's target and host addresses on its first VM."""
    head, first, *rest = toml.split("[[vm]]")
    slots = _slots(toml)
    for gpa, _ in slots:
        first = first.replace(
            f"gpa_start = {gpa:#x}\n", f"gpa_start = {gpa:#x}\nhva_start = {HVA_BASE + gpa:#x}\n"
        )
    first = "\ndamon_target = 0" + first
    return "[[vm]]".join([head, first, *rest])


def _bursts(
    slots: list[tuple[int, int]], per_burst: int, t: float, rng: np.random.Generator
) -> bytes:
    """One aggregation's lines: ``per_burst`` regions evenly over the slots, at time ``t``."""
    total = sum(size for _, size in slots)
    step = max(4096, (total // per_burst) // 4096 * 4096)
    out = []
    regions = [
        (HVA_BASE + gpa + lo, HVA_BASE + gpa + min(lo + step, size))
        for gpa, size in slots
        for lo in range(0, size, step)
    ]
    n = len(regions)
    nacc = rng.integers(0, AGGR_US // SAMPLE_US + 1, size=n)
    age = rng.integers(0, 60, size=n)
    for i, (lo, hi) in enumerate(regions):
        out.append(
            f"{'kdamond.0':>16}-{99:<7} ({99:>7}) [005] ..... {t + i * 1e-6:12.6f}: "
            f"damon_aggregated: target_id=0 nr_regions={n} {lo}-{hi}: {nacc[i]} {age[i]}\n"
        )
    return "".join(out).encode()


def _span(kvm_log: Path) -> tuple[float, float, int]:
    """First and last time stamps of a log, and its line count (read as a stream)."""
    first = last = None
    count = 0
    with kvm_log.open("rb") as fh:
        for ln in fh:
            count += 1
            if not ln.startswith(b"#"):
                m = _TS.search(ln)
                if m:
                    last = float(m.group(1))
                    first = last if first is None else first
    if first is None or last is None:
        msg = f"{kvm_log}: no time stamps"
        raise ValueError(msg)
    return first, last, count


def write_mixed(kvm_log: Path, toml: str, share: float, out: Path) -> tuple[int, int]:
    """Merge DAMON bursts into ``kvm_log`` so that about ``share`` of the lines are DAMON's.

    Both files are streamed (the bench's parent process stays small: a child it starts
    inherits its peak memory figure). Returns (kvm lines, DAMON lines) written to ``out``.
    """
    first, last, count = _span(kvm_log)
    n_bursts = max(1, int((last - first) / AGGR_S))
    per_burst = max(10, int(share / (1 - share) * count) // n_bursts)
    slots = _slots(toml)
    rng = np.random.default_rng(7)
    damon = 0
    next_t = first + AGGR_S
    with kvm_log.open("rb") as src, out.open("wb") as fh:
        for ln in src:
            if not ln.startswith(b"#"):
                m = _TS.search(ln)
                t = float(m.group(1)) if m else next_t
                while t >= next_t:
                    burst = _bursts(slots, per_burst, next_t, rng)
                    damon += burst.count(b"\n")
                    fh.write(burst)
                    next_t += AGGR_S
            fh.write(ln)
    return count, damon
