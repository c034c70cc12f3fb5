"""What a fleet replays under: the model file, the sweeps, and the grid of sweep points.

A sweep point is a set of overrides of :class:`~replay.mmu.config.MmuConfig` constants (MODEL.md
section 1) and :class:`~replay.mmu.config.CostModel` estimates (rule 18), on top of the base
configuration that ``--model`` and ``--costs`` give. ``replay run --model`` reads the same model
files, so any point of a sweep can be replayed alone.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from replay.mmu.config import ConfigError, CostModel, MmuConfig

if TYPE_CHECKING:
    from pathlib import Path

COSTS_PREFIX = "costs."
"""Sweep keys naming a cost estimate start so: ``costs.refill_page_pressure_ns``."""

_BIG = 1 << 30
MMU_BOUNDS: dict[str, tuple[int, int]] = {
    # Rule 4: a cache never runs dry inside a fault; 5 objects cover the deepest walk (four
    # levels below a 5-level root and the root), so the topup minimums may not go below 5.
    "cache_capacity": (5, _BIG),
    "min_shadow_page": (5, _BIG),
    "min_page_header": (5, _BIG),
    "min_pte_list_desc": (1, _BIG),
    "shrink_batch": (1, _BIG),  # rule 10 divides the scan into batches of this size
    "seeks": (1, _BIG),  # rule 10 divides by it
    "pte_prefetch": (1, 512),  # rule 3e; a power of 2, checked by MmuConfig itself
    "min_free_mmu_pages": (0, _BIG),
    "refill_pages": (0, _BIG),
    "n_max_min": (1, _BIG),
    "n_max_divisor": (1, _BIG),  # rule 26 divides by it
}
"""The whole numbers each ``MmuConfig`` constant may take."""


def check_mmu(values: dict[str, Any], where: str) -> MmuConfig:
    """Build an ``MmuConfig`` from overrides, each a whole number in its range.

    ``where`` starts every message (``model file m.toml``, ``--sweep``).
    """
    known = {f.name for f in fields(MmuConfig)}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(
                f"{where}: unknown MMU constant {key!r}; known constants are "
                f"{', '.join(sorted(known))}"
            )
        lo, hi = MMU_BOUNDS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            limit = f"from {lo} to {hi}" if hi < _BIG else f">= {lo}"
            raise ConfigError(f"{where}: {key} = {value!r} must be a whole number {limit}")
    cfg = replace(MmuConfig(), **values) if values else MmuConfig()
    for small in ("min_shadow_page", "min_page_header", "min_pte_list_desc"):
        if getattr(cfg, small) > cfg.cache_capacity:
            # A topup refills to capacity: a minimum above it could never be met (rule 3a).
            raise ConfigError(
                f"{where}: {small} = {getattr(cfg, small)} exceeds cache_capacity = "
                f"{cfg.cache_capacity}; a topup fills a cache to its capacity"
            )
    return cfg


def _check_pte_prefetch(values: dict[str, Any], where: str) -> None:
    grp = values.get("pte_prefetch")
    if isinstance(grp, int) and not isinstance(grp, bool) and grp & (grp - 1):
        raise ConfigError(f"{where}: pte_prefetch = {grp} must be a power of 2 from 1 to 512")


def mmu_overrides(cfg: MmuConfig) -> dict[str, int]:
    """The constants of ``cfg`` that differ from the defaults."""
    default = asdict(MmuConfig())
    return {k: v for k, v in asdict(cfg).items() if default[k] != v}


def model_from_toml(path: Path) -> MmuConfig:
    """Read a model file: ``name = value`` lines overriding ``MmuConfig`` constants.

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("model.toml").write_text("cache_capacity = 20")  # doctest: +SKIP
    >>> model_from_toml(Path("model.toml")).cache_capacity  # doctest: +SKIP
    20
    """
    where = f"model file {path}"
    if not path.is_file():
        raise ConfigError(f"{where} does not exist; check the path")
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise ConfigError(f"{where} cannot be read ({exc.strerror})") from None
    _check_pte_prefetch(doc, where)
    return check_mmu(doc, where)


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
            if value < 0:
                raise ConfigError(f"{where}: {key} = {value} must be a whole number of ns >= 0")
        else:
            _check_pte_prefetch({key: value}, where)
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
