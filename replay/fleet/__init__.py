"""Fleets: many hosts' traces, and sweeps of the model's constants, on a Dask cluster.

A job is one trace replayed under every policy at one sweep point; it writes the same runs as
``replay run`` into ``FLEET_DIR/runs/``. :func:`run_fleet` runs the jobs (skipping finished
ones) and returns the fleet table; :func:`fleet_table` reads it back.

Examples
--------
>>> from pathlib import Path
>>> from replay import FleetSettings, generate, load_scenario, run_fleet
>>> from replay.fleet import parse_sweep
>>> Path("traces").mkdir()
>>> _ = generate(load_scenario("quick", accesses=20_000), Path("traces/quick.parquet"))
>>> settings = FleetSettings(policies=("zap",), sweeps=(parse_sweep("cache_capacity=20,40"),))
>>> result = run_fleet(["traces/"], Path("fleet"), settings, scheduler="inprocess")
>>> result.table.select("point", "policy", "pages_freed").rows()
[('cache_capacity=20', 'zap', 256), ('cache_capacity=40', 'zap', 256)]
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replay.fleet.driver import FleetResult, FleetSettings, run_fleet
from replay.fleet.settings import parse_sweep

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl

__all__ = [
    "FleetResult",
    "FleetSettings",
    "fleet_table",
    "parse_sweep",
    "run_fleet",
]


def fleet_table(fleet_dir: Path) -> pl.DataFrame:
    """Read a fleet's table (``FLEET_DIR/fleet.parquet``) as a polars DataFrame.

    Parameters
    ----------
    fleet_dir : Path
        A folder ``replay fleet`` (or :func:`run_fleet`) wrote, and finished.

    Returns
    -------
    polars.DataFrame
        One row per (trace, sweep point, policy), every number of the run's totals a column.

    Raises
    ------
    FleetFormatError
        The folder is not a finished fleet of a schema this version reads.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_scenario, run_fleet, fleet_table
    >>> Path("t").mkdir()
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("t/quick.parquet"))
    >>> _ = run_fleet(["t/"], Path("fleet"), scheduler="inprocess")
    >>> fleet_table(Path("fleet")).select("trace", "policy", "status").rows()
    [('quick', 'zap', 'ok'), ('quick', 'none', 'ok'), ('quick', 'cache', 'ok')]
    """
    from replay.fleet.load import load_fleet

    return load_fleet(fleet_dir).table
