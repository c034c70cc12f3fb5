"""The vectorized engine's MMU state (MODEL.md section 2) as flat arrays.

Leaves are indexed by leaf key and SPs by SP id (``replay.mmu.layout``), so the state of every
VM is a handful of arrays whose size is bounded by the guests' memory, not by the trace. The
vCPU caches are in ``replay.mmu.caches``; what removes state, in ``replay.mmu.removals``.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from replay.mmu.layout import Layout

_EIGHT_TRUE = np.frombuffer(np.ones(8, dtype=bool).tobytes(), dtype=np.uint64)[0]
"""Eight bools of True as one 64-bit word."""
GATHER_FLAGS = np.uint64(0x0102040810204080)
"""Times a word of eight 0/1 bytes: byte i's bit lands at bit 56 + i (little-endian)."""


class Leaves:
    """Per leaf key: whether its leaf is present, and the cause of its last removal."""

    def __init__(self, n_keys: int) -> None:
        # 512 entries more than keys, never set: the fast table sends an access it cannot place
        # to one of them (key n_keys plus its offset in its 2 MiB block), so its ``present`` is
        # False with no mask.
        self.present = np.zeros(n_keys + 512, dtype=bool)
        self.cause = np.zeros(n_keys, dtype=np.int8)
        """Rule 20's last-removal cause (a ``Cause`` code; 0, cold, for never removed)."""
        self.bits: np.ndarray | None = None
        """``present`` packed 8 leaves to a byte, during a long epoch (see :meth:`pack`)."""

    def pack(self) -> None:
        """Keep a packed copy of ``present`` for the hit test, until :meth:`unpack`.

        A long epoch tests hits on it: 8 times less memory for the random reads to miss in,
        for one pass to pack it; the installs keep it in step (:meth:`mirror`).
        """
        self.bits = np.packbits(self.present, bitorder="little")

    def repack(self, lo: int, hi: int) -> None:
        """Re-pack the packed copy over keys ``lo`` to ``hi`` (byte-aligned: one VM's keys).

        A page-limit zap drops one VM's leaves in the middle of an epoch; re-packing that VM's
        keys alone leaves the other VMs' bytes to the lanes that are updating them.
        """
        if self.bits is not None:
            a, b = lo & ~7, (hi + 7) & ~7  # whole bytes; the keys past a VM's last are padding
            self.bits[a >> 3 : b >> 3] = np.packbits(self.present[a:b], bitorder="little")

    def unpack(self) -> None:
        """Drop the packed copy (host events change ``present`` without mirroring)."""
        self.bits = None

    def mirror(self, keys: np.ndarray) -> None:
        """Bring the packed copy of ``present`` (if any) up to date at ``keys``."""
        if self.bits is None or not len(keys):
            return
        byte = keys >> 3
        # Eight flags (bytes of 0 or 1) as one word; the multiply gathers flag i into bit
        # 56 + i with no carries (checked over all 256 patterns in the tests).
        words = self.present.view(np.uint64)[byte]
        words *= GATHER_FLAGS
        words >>= np.uint64(56)
        self.bits[byte] = words

    def install(self, keys: np.ndarray) -> None:
        """Install the leaves of ``keys`` (rule 3e)."""
        self.present[keys] = True
        self.mirror(keys)

    def install_groups(self, starts: np.ndarray, size: int) -> None:
        """Install every leaf of the prefetch groups of ``size`` keys starting at ``starts``."""
        if size == 8:
            # The group's 8 keys are one aligned word (see the layout): set it whole.
            self.present.view(np.uint64)[starts >> 3] = _EIGHT_TRUE
            if self.bits is not None:
                self.bits[starts >> 3] = 0xFF
        else:
            for i in range(size):  # the group's consecutive keys
                self.install(starts + i)


class Sps:
    """Per SP id: exists, linked, unlink cause, creation order; per VM the live count.

    Index ``n_sps`` is a sentinel, the roots' parent: never live, and it reads as linked, so
    it is never unlinked on a path.
    """

    def __init__(self, lay: Layout) -> None:
        self.lay = lay
        self.exists = np.zeros(lay.n_sps + 1, dtype=bool)
        self.linked = np.zeros(lay.n_sps + 1, dtype=bool)
        self.linked[lay.n_sps] = True
        self.unlink_cause = np.zeros(lay.n_sps + 1, dtype=np.int8)
        """Rule 20: the cause of the zap that unlinked an SP (cleared by a relink)."""
        self.seq = np.zeros(lay.n_sps + 1, dtype=np.int64)
        """Creation order (rule 11: oldest first; relinking does not renew it)."""
        self.next_seq = 0
        self.live = np.zeros(lay.n_vms, dtype=np.int64)
        """Live SPs per VM, the root and unlinked ones included (rule 26)."""
        self.zap_mark = np.zeros(lay.n_sps + 1, dtype=bool)
        """Scratch marks of the SPs a zap frees, clear between zaps."""
        self._seq_lock = threading.Lock()

    def allocate(self, ids: np.ndarray) -> None:
        """Rule 3d: allocate SPs ``ids``, linked, created in the order given."""
        self.exists[ids] = True
        self.linked[ids] = True
        self.unlink_cause[ids] = 0
        if not len(ids):
            return
        # Lanes of a parallel epoch allocate at once, each for its own VMs (ENGINE.md, "Lanes"):
        # the counter is shared, so it is taken under a lock; the order it gives is only ever
        # compared within one VM (rule 11's oldest first), where it is creation order still.
        with self._seq_lock:
            first = self.next_seq
            self.next_seq += len(ids)
        self.seq[ids] = first + np.arange(len(ids))
        # Element by element: a whole-array ``live +=`` would overwrite another lane's counts.
        np.add.at(self.live, self.lay.sp_vm[ids], 1)

    def relink(self, ids: np.ndarray) -> None:
        """Rule 3d: relink unlinked SPs ``ids``, which clears their unlink cause (rule 20)."""
        self.linked[ids] = True
        self.unlink_cause[ids] = 0

    def oldest(self, vi: int, n: int) -> np.ndarray:
        """VM ``vi``'s n oldest live SPs, the root excepted (``kvm_mmu_zap_oldest_mmu_pages``).

        At least one is chosen when any is live: the kernel checks its count after zapping.
        """
        lay = self.lay
        s_lo, s_hi = int(lay.vm_sp_lo[vi]), int(lay.vm_sp_hi[vi])
        ids = np.flatnonzero(self.exists[s_lo:s_hi]) + s_lo
        ids = ids[ids != lay.root_sp[vi]]
        count = max(n, 1)
        if len(ids) > count:
            ids = ids[np.argpartition(self.seq[ids], count - 1)[:count]]
        oldest: np.ndarray = ids
        return oldest
