"""The CLI's choices agree with the values the library reads, and the library still checks."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

import pytest

from replay.cli.options import AccessSource, EngineChoice, FaultCodes, LogLayout, MmuMode
from replay.errors import ReplayError

if TYPE_CHECKING:
    from pathlib import Path


def _values(choice: type[StrEnum]) -> tuple[str, ...]:
    return tuple(member.value for member in choice)


def test_choices_are_the_library_values_in_its_order() -> None:
    """Order matters too: typer lists the values in ``--help`` in the enum's order."""
    from replay.convert import layout as convert_layout
    from replay.convert import render as convert_render
    from replay.convert.options import ACCESS_SOURCES, FAULT_CODES
    from replay.run.records import ENGINES
    from replay.run.schema import RUN_SCHEMA
    from replay.trace.schema import MMU_MODES

    assert _values(EngineChoice) == ENGINES == tuple(RUN_SCHEMA["enums"]["engine"])
    assert _values(MmuMode) == MMU_MODES
    assert _values(LogLayout) == convert_layout.LAYOUTS == convert_render.LAYOUTS
    assert _values(FaultCodes) == FAULT_CODES
    assert _values(AccessSource) == ACCESS_SOURCES


@pytest.mark.parametrize(
    ("option", "fragment"),
    [
        ({"fault_codes": "arm"}, "--fault-codes 'arm'"),
        ({"access_source": "kvm_exit"}, "--access-source 'kvm_exit'"),
        ({"layout": "xml"}, "--format 'xml'"),
    ],
)
def test_convert_logs_refuses_what_the_cli_refuses(
    tmp_path: Path, option: dict[str, str], fragment: str
) -> None:
    """Called from Python, convert_logs checks its options itself: typer is not in the way."""
    from replay.convert import ConvertOptions, convert_logs

    log = tmp_path / "a.txt"
    log.write_text("")
    with pytest.raises(ReplayError, match=fragment):
        convert_logs([str(log)], tmp_path / "t.parquet", ConvertOptions(**option))  # type: ignore[arg-type]
    assert not (tmp_path / "t.parquet").exists()
