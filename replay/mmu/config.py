"""The model's constants (MODEL.md section 1), the cost model (rule 18) and the policies.

Everything a run used is written into its ``summary.json``; both engines read only these.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields, replace
from enum import IntEnum
from typing import TYPE_CHECKING, Any, Literal

from replay.errors import ReplayError

if TYPE_CHECKING:
    from pathlib import Path

Policy = Literal["zap", "none", "cache"]
POLICIES: tuple[Policy, ...] = ("zap", "none", "cache")
"""``zap``: kernels up to 6.12. ``none``: 6.13 and later. ``cache``: the Sept 2024 series."""


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


@dataclass(frozen=True)
class CostModel:
    """Estimated costs in ns (rule 18). Estimates: every output labels them as such."""

    fault_base_ns: int = 2000
    sp_alloc_ns: int = 300
    refill_page_ns: int = 250
    refill_page_pressure_ns: int = 2500
    pressure_window_ns: int = 1_000_000_000
    zap_flush_ns: int = 10_000

    @classmethod
    def from_toml(cls, path: Path) -> CostModel:
        """Read overrides from a TOML file of ``name = value`` lines (any subset)."""
        if not path.is_file():
            raise ConfigError(f"costs file {path} does not exist; check the path")
        try:
            with path.open("rb") as fh:
                doc = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"costs file {path}: not valid TOML ({exc})") from None
        known = {f.name for f in fields(cls)}
        values: dict[str, int] = {}
        for key, value in doc.items():
            if key not in known:
                raise ConfigError(
                    f"costs file {path}: unknown key {key!r}; known keys are "
                    f"{', '.join(sorted(known))}"
                )
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(
                    f"costs file {path}: {key} = {value!r} must be a whole number of ns >= 0"
                )
            values[key] = value
        return replace(cls(), **values)

    def to_json(self) -> dict[str, Any]:
        """The cost model as written into a run's summary."""
        return asdict(self)


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
