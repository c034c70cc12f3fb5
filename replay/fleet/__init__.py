"""Fleets: many hosts' traces, and sweeps of the model's constants, on a Dask cluster.

A job is one trace replayed under every policy at one sweep point; it writes the same runs as
``replay run`` into ``FLEET_DIR/runs/``. :func:`run_fleet` runs the jobs (skipping finished
ones) and returns the fleet table; :func:`fleet_table` reads it back.

Examples
--------
>>> from pathlib import Path
>>> from replay.fleet import FleetSettings, fleet_table, parse_sweep, run_fleet
>>> settings = FleetSettings(sweeps=(parse_sweep("cache_capacity=20,40"),))
>>> result = run_fleet(["traces/"], Path("fleet"), settings)  # doctest: +SKIP
>>> fleet_table(Path("fleet")).group_by("policy", "point").agg("pages_freed")  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replay.fleet.driver import FleetResult, FleetSettings, run_fleet
from replay.fleet.settings import model_from_toml, parse_sweep

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl

__all__ = [
    "FleetResult",
    "FleetSettings",
    "fleet_table",
    "model_from_toml",
    "parse_sweep",
    "run_fleet",
]


def fleet_table(fleet_dir: Path) -> pl.DataFrame:
    """Read a fleet's table (``FLEET_DIR/fleet.parquet``) as a polars DataFrame."""
    from replay.fleet.load import load_fleet

    return load_fleet(fleet_dir).table
