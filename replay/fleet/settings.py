"""What a fleet replays under: the sweeps, and the grid of sweep points.

A sweep point is a set of overrides of :class:`~replay.mmu.config.MmuConfig` constants (MODEL.md
section 1) and :class:`~replay.mmu.config.CostModel` estimates (rule 18), on top of the base
configuration that ``--model`` (:meth:`MmuConfig.from_toml`) and ``--costs`` give; a swept
value is checked as a model or costs file's value would be, so ``replay run --model`` and
``--costs`` replay any point alone.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields, replace

from replay._toml import INT64_MAX
from replay.mmu.config import COST_MAX_NS, MODEL_RANGES, ConfigError, CostModel, MmuConfig

COSTS_PREFIX = "costs."
"""Sweep keys naming a cost estimate start so: ``costs.refill_page_pressure_ns``."""

COST_RANGES: dict[str, tuple[int, int]] = {
    **{f.name: (0, COST_MAX_NS) for f in fields(CostModel)},
    "pressure_window_ns": (0, INT64_MAX),  # only compared with time differences
}
"""The values a swept cost estimate may take: those a costs file may give."""


def check_mmu(values: dict[str, int], where: str) -> MmuConfig:
    """Build an ``MmuConfig`` from overrides, each a whole number in its range.

    The ranges and cross-checks are a model file's (:meth:`MmuConfig.from_toml`):
    :data:`~replay.mmu.config.MODEL_RANGES`, a power of 2 for ``pte_prefetch`` (rule 3e), and
    no cache minimum above ``cache_capacity`` (a topup fills a cache to capacity, rule 3a).
    ``where`` starts every message (``--sweep cache_capacity=...``).
    """
    for key, value in values.items():
        lo, hi = MODEL_RANGES[key]
        if not lo <= value <= hi:
            raise ConfigError(f"{where}: {key} = {value} is out of range; it must be {lo}..{hi}")
    try:
        cfg = replace(MmuConfig(), **values)
    except ValueError as exc:  # MmuConfig's own check of pte_prefetch
        raise ConfigError(f"{where}: {exc}") from None
    for small in ("min_shadow_page", "min_page_header", "min_pte_list_desc"):
        if getattr(cfg, small) > cfg.cache_capacity:
            raise ConfigError(
                f"{where}: {small} = {getattr(cfg, small)} is more than cache_capacity = "
                f"{cfg.cache_capacity}; a topup fills a cache to its capacity"
            )
    return cfg


def mmu_overrides(cfg: MmuConfig) -> dict[str, int]:
    """The constants of ``cfg`` that differ from the defaults."""
    default = asdict(MmuConfig())
    return {k: v for k, v in asdict(cfg).items() if default[k] != v}


@dataclass(frozen=True)
class Sweep:
    """One ``--sweep KEY=V1,V2,...``: a constant or a cost estimate and its values."""

    key: str
    values: tuple[int, ...]

    @property
    def is_cost(self) -> bool:
        """Whether the key names a cost estimate (``costs.``) rather than an MMU constant."""
        return self.key.startswith(COSTS_PREFIX)


def parse_sweep(text: str) -> Sweep:
    """Parse ``KEY=V1,V2,...``; every value a whole number valid for its key."""
    where = f"--sweep {text}"
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise ConfigError(f"{where}: write KEY=V1,V2,... e.g. --sweep cache_capacity=20,40,80")
    mmu_keys = {f.name for f in fields(MmuConfig)}
    cost_keys = {f.name for f in fields(CostModel)}
    if key.startswith(COSTS_PREFIX):
        if key.removeprefix(COSTS_PREFIX) not in cost_keys:
            raise ConfigError(
                f"{where}: unknown cost estimate {key!r}; known ones are "
                f"{', '.join(COSTS_PREFIX + k for k in sorted(cost_keys))}"
            )
    elif key not in mmu_keys:
        hint = f" (a cost estimate is costs.{key})" if key in cost_keys else ""
        raise ConfigError(
            f"{where}: unknown sweep key {key!r}{hint}; sweep an MMU constant "
            f"({', '.join(sorted(mmu_keys))}) or a cost estimate (costs.NAME)"
        )
    values: list[int] = []
    for part in (p.strip() for p in rest.split(",")):
        try:
            value = int(part.replace("_", ""))
        except ValueError:
            raise ConfigError(
                f"{where}: value {part!r} of {key} is not a whole number; give whole numbers "
                "separated by commas"
            ) from None
        if value in values:
            raise ConfigError(f"{where}: value {value} is given twice")
        values.append(value)
    sweep = Sweep(key, tuple(values))
    for value in sweep.values:
        if sweep.is_cost:
            lo, hi = COST_RANGES[key.removeprefix(COSTS_PREFIX)]
            if not lo <= value <= hi:
                raise ConfigError(
                    f"{where}: {key} = {value} is out of range; it must be {lo}..{hi} (ns)"
                )
        else:
            check_mmu({key: value}, where)
    return sweep


@dataclass(frozen=True)
class SweepPoint:
    """One point of the grid: its values by sweep key, and the configuration they give."""

    values: tuple[tuple[str, int], ...]
    cfg: MmuConfig
    costs: CostModel

    @property
    def id(self) -> str:
        """The point's folder name: ``default``, or ``key=value`` joined by ``+``."""
        if not self.values:
            return "default"
        return "+".join(f"{k}={v}" for k, v in self.values)


def grid(sweeps: tuple[Sweep, ...], cfg: MmuConfig, costs: CostModel) -> list[SweepPoint]:
    """Every combination of the sweeps' values over the base ``cfg`` and ``costs``.

    The order is the sweeps' order, the first sweep varying slowest; no sweep gives one point.
    """
    keys = [s.key for s in sweeps]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise ConfigError(f"--sweep {twice} is given twice; give each key once")
    points = []
    for combo in itertools.product(*(s.values for s in sweeps)):
        values = tuple(zip(keys, combo, strict=True))
        mmu = {k: v for k, v in values if not k.startswith(COSTS_PREFIX)}
        cost = {k.removeprefix(COSTS_PREFIX): v for k, v in values if k.startswith(COSTS_PREFIX)}
        point_cfg = check_mmu(
            {**asdict(cfg), **mmu}, "--sweep " + ",".join(f"{k}={v}" for k, v in values)
        )
        points.append(SweepPoint(values, point_cfg, replace(costs, **cost)))
    return points
