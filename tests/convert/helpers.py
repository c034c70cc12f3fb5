"""Paths of the real kernel logs and a converter shortcut for the convert tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from replay.convert import ConvertOptions, ConvertReport, convert_logs

LOGS = Path(__file__).resolve().parents[2] / "traces" / "logs"

DAMON_PRETEND_VMS = """[[vm]]
name = "pretend"
tgid = 4242
damon_target = 0
[[vm.memslots]]
gpa_start = 0
size = "8g"
hva_start = 0x100000000
"""
"""A --vm-config for the machine's own DAMON captures (traces/logs/damon-*), which are of
physical addresses: one VM whose one memslot sits where their regions lie, 4..12 GiB."""


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
