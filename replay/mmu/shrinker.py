"""The core shrinker arithmetic of ``do_shrink_slab()`` (MODEL.md rule 9).

A pure function of the shrinker's ``count()``, its deferred work and the pass's priority: both
engines call it and then perform the scans it asks for, in order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from replay.mmu.config import MmuConfig


@dataclass(frozen=True)
class SlabPass:
    """What one ``shrink_slab`` pass asks of the KVM shrinker."""

    scans: tuple[int, ...]
    """``nr_to_scan`` of each scan call, in order."""
    nr_deferred: int
    """The global deferred count after the pass."""


def shrink_slab_pass(freeable: int, nr_deferred: int, priority: int, cfg: MmuConfig) -> SlabPass:
    """Rule 9: the scan calls of one pass, and the deferred work it leaves.

    Parameters
    ----------
    freeable : int
        The policy's ``count()`` at the start of the pass.
    nr_deferred : int
        The shrinker's deferred work before the pass.
    priority : int
        The reclaim priority, 12 (``DEF_PRIORITY``) down to 0 (drop_caches).
    cfg : MmuConfig
        Supplies ``seeks`` and ``shrink_batch``.

    Returns
    -------
    SlabPass
        The ``nr_to_scan`` of each scan call, in order, and the deferred work left.

    Examples
    --------
    Two worked examples of replay/mmu/MODEL.md appendix A.2 (23,614 shadow pages):

    >>> from replay.mmu.config import MmuConfig
    >>> cfg = MmuConfig()
    >>> shrink_slab_pass(23_614, 0, 12, cfg).scans   # priority 12 scans nothing
    ()
    >>> p = shrink_slab_pass(23_614, 0, 0, cfg)       # drop_caches
    >>> len(p.scans), set(p.scans), p.nr_deferred
    (36, {128}, 114)
    """
    if freeable == 0:
        # count() == 0: do_shrink_slab() returns at once, deferred work untouched.
        return SlabPass((), nr_deferred)
    nr = nr_deferred  # xchg(nr_deferred, 0)
    delta = ((freeable >> priority) * 4) // cfg.seeks
    total = min((nr >> priority) + delta, 2 * freeable)
    scans: list[int] = []
    scanned = 0
    while total >= cfg.shrink_batch or total >= freeable:
        n = min(cfg.shrink_batch, total)
        scans.append(n)
        total -= n
        scanned += n
    deferred = min(max(nr + delta - scanned, 0), 2 * freeable)
    return SlabPass(tuple(scans), deferred)
