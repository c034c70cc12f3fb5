"""Read a fleet folder back (for ``replay report`` and ``replay diff``), or say why not."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from replay._schemas import load_schema
from replay.errors import InputFileError

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl

_SCHEMA = load_schema("fleet.v1")


class FleetFormatError(InputFileError):
    """A folder is not a finished fleet this version reads."""


@dataclass(frozen=True)
class LoadedFleet:
    """A finished fleet: its folder, ``fleet.json`` and ``fleet.parquet``."""

    path: Path
    doc: dict[str, Any]
    table: pl.DataFrame


def is_fleet(path: Path) -> bool:
    """Whether ``path`` is a fleet folder (it has a ``fleet.json``).

    A folder that cannot be read is not taken for one: the run loader then names it in one
    line (Python 3.11's ``is_file`` raises on a permission error).
    """
    try:
        return (path / "fleet.json").is_file()
    except OSError:
        return False


def load_fleet(path: Path) -> LoadedFleet:
    """Check that ``path`` holds a finished fleet of a schema this version reads; load it."""
    import polars as pl

    summary = path / "fleet.json"
    if not summary.is_file():
        raise FleetFormatError(
            f"{path} is not a fleet (no fleet.json); give a replay fleet -o folder"
        )
    try:
        doc = json.loads(summary.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FleetFormatError(
            f"{summary} cannot be read ({exc}); re-run the replay fleet command to rewrite it"
        ) from None
    if not isinstance(doc, dict) or doc.get("kind") != _SCHEMA["name"]:
        raise FleetFormatError(f"{summary} is not a fleet summary (kind {_SCHEMA['name']})")
    version = doc.get("schema_version")
    if not isinstance(version, int) or version < 1:
        raise FleetFormatError(
            f"{summary} has no valid schema_version; it was not written by replay fleet"
        )
    if version > int(_SCHEMA["schema_version"]):
        raise FleetFormatError(
            f"fleet {path} has fleet schema v{version}, newer than this kvm-mmu-replay reads "
            f"(v{_SCHEMA['schema_version']}); upgrade kvm-mmu-replay"
        )
    table_path = path / "fleet.parquet"
    if doc.get("state") != "complete" or not table_path.is_file():
        raise FleetFormatError(
            f"fleet {path} is not finished (it was interrupted); re-run the same replay fleet "
            "command to complete it"
        )
    try:
        table = pl.read_parquet(table_path)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise FleetFormatError(
            f"{table_path} cannot be read ({' '.join(str(exc).split())[:200]}); re-run the "
            "replay fleet command to rewrite it"
        ) from None
    return LoadedFleet(path, doc, table)
