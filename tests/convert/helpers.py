"""Paths of the real kernel logs and a converter shortcut for the convert tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from replay.convert import ConvertOptions, ConvertReport, convert_logs

LOGS = Path(__file__).resolve().parents[2] / "traces" / "logs"


def convert(tmp: Path, *names: str, **options: Any) -> tuple[ConvertReport, pl.DataFrame]:
    """Convert real logs (by file name under traces/logs) and read the trace back."""
    out = tmp / "t.parquet"
    if out.exists():
        out.unlink()
    report = convert_logs([str(LOGS / n) for n in names], out, ConvertOptions(**options))
    return report, pl.read_parquet(out).with_columns(pl.col(pl.Categorical).cast(pl.String))


def lines_with(name: str, *needles: str) -> list[str]:
    """Lines of a real log holding every needle (a plain reading, to check the converter on)."""
    text = (LOGS / name).read_text().splitlines()
    return [line for line in text if all(n in line for n in needles)]
