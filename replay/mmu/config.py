"""The model's constants (MODEL.md section 1), the cost model (rule 18) and the policies.

Everything a run used is written into its ``summary.json``; both engines read only these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal

from replay._toml import INT64_MAX
from replay.errors import ReplayError

if TYPE_CHECKING:
    from pathlib import Path

Policy = Literal["zap", "none", "cache"]
POLICIES: tuple[Policy, ...] = ("zap", "none", "cache")
"""``zap``: kernels up to 6.12. ``none``: 6.13 and later. ``cache``: the Sept 2024 series."""

KEEPS_PAGE_TABLES: frozenset[Policy] = frozenset({"none", "cache"})
"""Policies whose shrinker never touches a page table: ``none`` has no shrinker, and the
``cache`` shrinker empties vCPU caches only (rule 12). Their page tables go through the same
states on one trace, so their replays can share one walk (ENGINE.md, "Shared walks")."""


def shared_walks(policies: tuple[Policy, ...]) -> list[tuple[int, ...]]:
    """The positions of ``policies`` grouped by the walk that can replay them, in order.

    Every policy of :data:`KEEPS_PAGE_TABLES` joins one walk (at the first one's place); each
    other policy walks alone. A walk's first position is the policy whose engine replays it.
    """
    walks: list[list[int]] = []
    kept: list[int] | None = None
    for pos, policy in enumerate(policies):
        if policy not in KEEPS_PAGE_TABLES:
            walks.append([pos])
        elif kept is None:
            kept = [pos]
            walks.append(kept)
        else:
            kept.append(pos)
    return [tuple(w) for w in walks]


class ConfigError(ReplayError):
    """A policy, MMU mode, constant or cost the user gave is not valid."""


class Cause(IntEnum):
    """Why a translation was missing (rule 5). 0 doubles as "never removed" in the state."""

    COLD = 0
    ZAPPED = 1
    NOTIFIER = 2
    RECYCLED = 3
    INVALIDATED = 4
    MMIO = 5


class Refill(IntEnum):
    """Whether a fault refilled a vCPU cache, and why (rule 6)."""

    NONE = 0
    NATURAL = 1
    SHRINKER = 2


class Attribution(IntEnum):
    """The answer the tool exists to give (rule 7)."""

    NONE = 0
    CACHE_EVICTION = 1
    ZAPPED_PAGE_TABLES = 2


CAUSES = tuple(c.name.lower() for c in Cause)
REFILLS = tuple(r.name.lower() for r in Refill)
ATTRIBUTIONS = tuple(a.name.lower() for a in Attribution)


@dataclass(frozen=True)
class MmuConfig:
    """Constants of MODEL.md section 1; every one configurable.

    ``n_max_mmu_pages`` is not here: it is per VM, ``max(64, guest_pages // 50)`` (rule 26);
    ``n_max_min`` and ``n_max_divisor`` set it.

    Parameters
    ----------
    cache_capacity : int
        Objects a vCPU cache holds when full (``KVM_ARCH_NR_OBJS_PER_MEMORY_CACHE``).
    min_shadow_page, min_page_header : int
        A fault tops a cache up when it holds fewer objects than this (rule 3a).
    min_pte_list_desc : int
        The same for shadow_direct's ``pte_list_desc`` cache.
    shrink_batch : int
        ``SHRINK_BATCH``: the most one scan call is asked for (rule 9).
    seeks : int
        The KVM shrinker's ``seeks`` (rule 9).
    pte_prefetch : int
        Entries of a prefetch group (rule 3e): a power of 2 from 1 to 512.
    min_free_mmu_pages, refill_pages : int
        When the shadow_direct page limit acts, and how much it makes room for (rule 13).
    n_max_min, n_max_divisor : int
        A VM's page limit is ``max(n_max_min, guest_pages // n_max_divisor)`` (rule 26).

    Raises
    ------
    ValueError
        If ``pte_prefetch`` is not a power of 2 from 1 to 512.

    Examples
    --------
    >>> from replay import MmuConfig
    >>> cfg = MmuConfig(pte_prefetch=16)
    >>> cfg.n_max_mmu_pages(guest_pages=262_144)  # a 1 GiB guest
    5242
    >>> MmuConfig(pte_prefetch=6)
    Traceback (most recent call last):
    ...
    ValueError: pte_prefetch must be a power of 2 from 1 to 512, not 6
    """

    cache_capacity: int = 40
    min_shadow_page: int = 5
    min_page_header: int = 5
    min_pte_list_desc: int = 14
    shrink_batch: int = 128
    seeks: int = 20
    pte_prefetch: int = 8
    min_free_mmu_pages: int = 5
    refill_pages: int = 25
    n_max_min: int = 64
    n_max_divisor: int = 50

    def __post_init__(self) -> None:
        grp = self.pte_prefetch
        if grp < 1 or grp & (grp - 1) or grp > 512:
            # A group must be an aligned part of a page table (rule 3e).
            raise ValueError(f"pte_prefetch must be a power of 2 from 1 to 512, not {grp}")

    def n_max_mmu_pages(self, guest_pages: int) -> int:
        """The shadow_direct page limit of a VM (rule 26)."""
        return max(self.n_max_min, guest_pages // self.n_max_divisor)

    @classmethod
    def from_toml(cls, path: Path) -> MmuConfig:
        """Read overrides of the constants from a model file of ``name = value`` lines.

        Any subset of the fields may be given, each a whole number within
        :data:`MODEL_RANGES`; a cache's minimum must not exceed ``cache_capacity`` (a topup
        fills a cache to capacity, rule 3a) and ``pte_prefetch`` must be a power of 2 (rule 3e).

        Raises
        ------
        ConfigError
            The file is missing or not TOML, names an unknown key, or a value is out of range.

        Examples
        --------
        >>> from pathlib import Path
        >>> from tempfile import TemporaryDirectory
        >>> with TemporaryDirectory() as tmp:
        ...     path = Path(tmp, "model.toml")
        ...     _ = path.write_text("cache_capacity = 64")
        ...     cfg = MmuConfig.from_toml(path)
        >>> cfg.cache_capacity, cfg.min_shadow_page
        (64, 5)
        """
        values = _overrides(path, "model file", MODEL_RANGES)
        try:
            cfg = replace(cls(), **values)
        except ValueError as exc:  # __post_init__'s own checks
            raise ConfigError(f"model file {path}: {exc}") from None
        for name in ("min_shadow_page", "min_page_header", "min_pte_list_desc"):
            if getattr(cfg, name) > cfg.cache_capacity:
                raise ConfigError(
                    f"model file {path}: {name} = {getattr(cfg, name)} is more than "
                    f"cache_capacity = {cfg.cache_capacity}; a topup fills a cache to its "
                    "capacity, so lower the minimum or raise the capacity"
                )
        return cfg


@dataclass(frozen=True)
class CostModel:
    """Estimated costs in ns (rule 18). Estimates: every output labels them as such.

    Parameters
    ----------
    fault_base_ns : int
        Every fault: an EPT violation exit and the slow fault path.
    sp_alloc_ns : int
        Each page-table page the fault allocates.
    refill_page_ns : int
        Each page a cache refill allocates, without memory pressure.
    refill_page_pressure_ns : int
        The same within ``pressure_window_ns`` after a reclaim pass.
    pressure_window_ns : int
        How long a reclaim pass counts as pressure (the bound included).
    zap_flush_ns : int
        One remote TLB flush of a VM, charged to the scan call or fault whose zap caused it
        (rule 25).

    Examples
    --------
    The first fault of a VM with a 4-level root allocates 4 page-table pages and refills its
    vCPU's cache with 40 pages:

    >>> from replay import CostModel
    >>> costs = CostModel()
    >>> costs.fault_base_ns + 4 * costs.sp_alloc_ns + 40 * costs.refill_page_ns
    13200
    >>> CostModel(sp_alloc_ns=500).to_json()["sp_alloc_ns"]
    500
    """

    fault_base_ns: int = 2000
    sp_alloc_ns: int = 300
    refill_page_ns: int = 250
    refill_page_pressure_ns: int = 2500
    pressure_window_ns: int = 1_000_000_000
    zap_flush_ns: int = 10_000

    @classmethod
    def from_toml(cls, path: Path) -> CostModel:
        """Read overrides from a TOML file of ``name = value`` lines (any subset).

        Every value is a whole number of ns; a per-event cost is at most :data:`COST_MAX_NS`.

        Raises
        ------
        ConfigError
            The file is missing or not TOML, names an unknown key, or a value is not a whole
            number in range.
        """
        return replace(cls(), **_overrides(path, "costs file", _COST_RANGES))

    def to_json(self) -> dict[str, Any]:
        """The cost model as written into a run's summary."""
        return asdict(self)


_INT32_MAX = (1 << 31) - 1
"""Counts that land in a fault row's int32 columns (pages refilled, SPs recycled)."""
MODEL_RANGES: dict[str, tuple[int, int]] = {
    "cache_capacity": (1, _INT32_MAX),
    # Rule 4: a cache never runs dry inside a fault. The deepest walk (a 5-level root and
    # its 4 tables) takes 5 objects of each cache that holds SPs.
    "min_shadow_page": (5, _INT32_MAX),
    "min_page_header": (5, _INT32_MAX),
    "min_pte_list_desc": (0, _INT32_MAX),
    "shrink_batch": (1, _INT32_MAX),  # 0 would never end the scan loop (rule 9)
    "seeks": (1, _INT32_MAX),  # a divisor (rule 9)
    "pte_prefetch": (1, 512),  # a group is part of one page table (rule 3e)
    "min_free_mmu_pages": (0, _INT32_MAX),
    "refill_pages": (0, _INT32_MAX),
    "n_max_min": (1, INT64_MAX),
    "n_max_divisor": (1, INT64_MAX),  # a divisor (rule 26)
}
"""Range of each constant a model file may set (:meth:`MmuConfig.from_toml`)."""
COST_MAX_NS = 10**9
"""The largest per-event cost a costs file may give: a second is beyond any real fault, and it
keeps one fault's estimate (rule 18: a base, SPs and up to ``cache_capacity`` pages) exact in
64 bits."""
_COST_RANGES: dict[str, tuple[int, int]] = {
    "fault_base_ns": (0, COST_MAX_NS),
    "sp_alloc_ns": (0, COST_MAX_NS),
    "refill_page_ns": (0, COST_MAX_NS),
    "refill_page_pressure_ns": (0, COST_MAX_NS),
    "pressure_window_ns": (0, INT64_MAX),  # only compared with time differences
    "zap_flush_ns": (0, COST_MAX_NS),
}


def _overrides(path: Path, what: str, ranges: dict[str, tuple[int, int]]) -> dict[str, int]:
    """The ``name = whole number`` lines of a costs or model file, each checked for range."""
    from replay._toml import read_toml

    table = read_toml(path, what, ConfigError)
    table.check_keys(ranges)
    return {
        key: table.integer(key, lo=lo, hi=hi) for key, (lo, hi) in ranges.items() if key in table
    }


def parse_policies(text: str) -> tuple[Policy, ...]:
    """Parse ``--policy zap,none,cache`` (order kept, duplicates dropped)."""
    out: list[Policy] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part not in POLICIES:
            raise ConfigError(f"unknown policy {part!r}; use one or more of {', '.join(POLICIES)}")
        policy: Policy = part
        if policy not in out:
            out.append(policy)
    if not out:
        raise ConfigError(f"no policy given; use one or more of {', '.join(POLICIES)}")
    return tuple(out)
