"""The MMU state of a replay as one object: leaves, SPs, and the hit test kept in step with them.

``state`` holds the arrays of leaves and SPs; ``hits`` the reachability derived from them. Both
are built here together, so that neither module needs the other's code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from replay.mmu.hits import HitTest
from replay.mmu.state import Leaves, Sps

if TYPE_CHECKING:
    from replay.mmu.layout import Layout
    from replay.mmu.tables import LookupTables


@dataclass(frozen=True)
class MmuState:
    """The whole MMU state of a replay: leaves, SPs, and reachability with its hit test."""

    lay: Layout
    leaves: Leaves
    sps: Sps
    hits: HitTest

    @classmethod
    def build(cls, tables: LookupTables) -> MmuState:
        """The state before the first event: nothing mapped, no SP, every cause cold."""
        lay = tables.lay
        sps = Sps(lay)
        return cls(lay, Leaves(lay.n_keys), sps, HitTest(tables, sps))
