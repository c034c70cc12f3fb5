"""``convert_logs`` as a library call: options checked first, progress over all logs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from replay.convert import ConvertOptions, ConvertReport, convert_logs
from replay.errors import ReplayError
from tests.convert.helpers import LOGS

if TYPE_CHECKING:
    from pathlib import Path


def test_progress_counts_the_lines_read_over_all_logs(tmp_path: Path) -> None:
    names = ("ftrace-kvm-head.txt", "ftrace-vmscan-dropcaches.txt")
    seen: list[int] = []
    report = convert_logs([str(LOGS / n) for n in names], tmp_path / "t.parquet", None, seen.append)
    assert isinstance(report, ConvertReport)
    first = len((LOGS / names[0]).read_text().splitlines())
    total = first + len((LOGS / names[1]).read_text().splitlines())
    assert report.lines == total
    # Told after every block of each log: the first log's lines, then both logs'.
    assert seen == sorted(seen)
    assert first in seen
    assert seen[-1] == total


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ConvertOptions(fault_codes="arm"), "--fault-codes 'arm': use auto, vmx or svm"),
        (ConvertOptions(access_source="x"), "--access-source 'x': use auto, kvm_page_fault"),
        (ConvertOptions(layout="xml"), "--format 'xml': use ftrace, perf, trace-cmd"),
    ],
)
def test_options_are_checked_before_any_log(
    tmp_path: Path, options: ConvertOptions, message: str
) -> None:
    with pytest.raises(ReplayError, match=message):
        convert_logs([str(tmp_path / "missing.txt")], tmp_path / "t.parquet", options)
    assert list(tmp_path.iterdir()) == []
