"""Reclaim passes from ``mm_shrink_slab_start/end`` lines (MODEL.md rule 9's ``reclaim`` event).

The KVM shrinker is not memcg-aware, so it runs once per pass over the memcg hierarchy, in the
root memcg's ``shrink_slab`` call, which runs every shrinker that is not memcg-aware. One
``reclaim`` event is one such pass, not one per memcg or per shrinker line. The rule, per task:

- a pass begins at a task's first shrinker line, and a new one begins when the priority or the
  node changes, when a reclaim episode of the task begins or ends
  (``mm_vmscan_direct_reclaim_*``, ``mm_vmscan_memcg_reclaim_*``, ``mm_vmscan_kswapd_sleep``),
  or when a shrinker that only the root call runs (:data:`ROOT_ONLY`) is seen a second time;
- its source is the episode around it (``direct``, ``memcg``), ``kswapd`` for a ``kswapdN``
  task, ``drop_caches`` for a priority-0 pass outside any episode, else ``direct``; a memcg
  episode whose pass reaches the root call (a root-only shrinker runs) is reclaim of the root
  memcg, i.e. ``proactive`` (``memory.reclaim``), since limit reclaim never reaches the root;
- its time is its first line's; ``mmu_shrink_scan`` lines (older kernels) are kept as the
  kernel's own KVM shrinker scans.

Checked on the shared drop_caches capture: its 98 shrinker lines are 2 passes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ROOT_ONLY = frozenset(
    {
        "mmu_shrink_scan",
        "kfree_rcu_shrink_scan",
        "vmap_node_shrink_scan",
        "shrink_huge_zero_folio_scan",
        "shrink_huge_zero_page_scan",
    }
)
"""Shrinkers registered without SHRINKER_MEMCG_AWARE: only the root memcg's call runs them.
Only ones checked in the kernel are listed: taking a memcg-aware shrinker for a root-only one
would split one pass per memcg, while leaving a root-only one out at worst merges two passes
when no listed shrinker had objects in the second."""
KVM_SHRINKER = "mmu_shrink_scan"
KSWAPD = re.compile(r"^kswapd\d+$")
DEF_PRIORITY = 12


@dataclass
class _Open:
    t_ns: int
    line: int
    priority: int | None
    nid: int
    episode: str | None
    kswapd: bool
    root_seen: set[tuple[str, int]] = field(default_factory=set)
    emitted: bool = False
    """Handed out at its start: only a memcg episode's pass waits (it may prove proactive)."""


@dataclass(frozen=True)
class Pass:
    """One reclaim pass."""

    t_ns: int
    line: int
    """Line of the pass's first shrinker line (orders rows of the same time)."""
    source: str
    priority: int
    nid: int
    guessed_source: bool
    """No episode, not kswapd, not priority 0: taken as direct."""
    guessed_priority: bool
    """The kernel printed no priority (before 4.16): taken as 12."""


@dataclass
class KvmScan:
    """One call of the kernel's own KVM shrinker (``mmu_shrink_scan`` lines)."""

    t_ns: int
    nr_deferred: int
    total_scan: int
    freed: int | None = None


@dataclass(frozen=True)
class ShrinkStart:
    """An ``mm_shrink_slab_start`` line, with what the pass rule reads of it."""

    task: int
    """The converter's number for the line's task (passes are grouped per task)."""
    comm: str
    t_ns: int
    line: int
    name: str
    """The shrinker's scan function (``mmu_shrink_scan`` is KVM's)."""
    shrinker: int
    """The shrinker's address: two shrinkers may share a scan function."""
    nid: int
    nr_deferred: int
    total_scan: int
    priority: int | None
    """None when the kernel printed none (before 4.16)."""


class PassBuilder:
    """Fed one file's vmscan events in time order; hands out passes as they close."""

    def __init__(self) -> None:
        self.open: dict[int, _Open] = {}
        self.episode: dict[int, str] = {}
        self.closed: list[Pass] = []
        self.kvm_scans: list[KvmScan] = []
        self._kvm_open: dict[int, KvmScan] = {}

    def _close(self, task: int) -> None:
        p = self.open.pop(task, None)
        if p is not None and not p.emitted:
            self._emit(p)

    def _emit(self, p: _Open) -> None:
        p.emitted = True
        guessed_source = False
        if p.episode == "memcg":
            source = "proactive" if p.root_seen else "memcg"
        elif p.episode is not None:
            source = p.episode
        elif p.kswapd:
            source = "kswapd"
        elif p.priority == 0:
            source = "drop_caches"
        else:
            source, guessed_source = "direct", True
        prio = DEF_PRIORITY if p.priority is None else max(0, min(DEF_PRIORITY, p.priority))
        self.closed.append(
            Pass(p.t_ns, p.line, source, prio, p.nid, guessed_source, p.priority is None)
        )

    def episode_event(self, task: int, event: str) -> None:
        """A reclaim begin/end or kswapd sleep line of ``task``."""
        self._close(task)
        if event.endswith("_begin"):
            self.episode[task] = "memcg" if "memcg" in event else "direct"
        else:
            self.episode.pop(task, None)

    def shrink_start(self, start: ShrinkStart) -> None:
        """An ``mm_shrink_slab_start`` line."""
        task, name, shrinker = start.task, start.name, start.shrinker
        p = self.open.get(task)
        root_only = name in ROOT_ONLY
        if (
            p is None
            or p.priority != start.priority
            or p.nid != start.nid
            or (root_only and (name, shrinker) in p.root_seen)
        ):
            self._close(task)
            p = _Open(
                start.t_ns,
                start.line,
                start.priority,
                start.nid,
                self.episode.get(task),
                bool(KSWAPD.match(start.comm)),
            )
            self.open[task] = p
        if root_only:
            p.root_seen.add((name, shrinker))
            if not p.emitted:
                self._emit(p)  # a memcg episode that reaches the root call: proactive
        if name == KVM_SHRINKER:
            scan = KvmScan(start.t_ns, start.nr_deferred, start.total_scan)
            self.kvm_scans.append(scan)
            self._kvm_open[task] = scan

    def shrink_end(self, task: int, name: str, retval: int) -> None:
        """An ``mm_shrink_slab_end`` line: the KVM shrinker's return value is what it freed."""
        if name == KVM_SHRINKER and task in self._kvm_open:
            self._kvm_open.pop(task).freed = retval

    def earliest_open(self) -> int | None:
        """Time of the earliest pass not yet handed out (rows after it must wait for it)."""
        return min((p.t_ns for p in self.open.values() if not p.emitted), default=None)

    def take(self, *, final: bool = False) -> list[Pass]:
        """Passes closed so far (all of them when ``final``)."""
        if final:
            for task in list(self.open):
                self._close(task)
        out, self.closed = self.closed, []
        return out
