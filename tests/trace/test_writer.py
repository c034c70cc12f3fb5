from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow.parquet as pq
import pytest

from replay.errors import OutputPathError
from replay.trace.schema import FOOTER_KEY
from replay.trace.writer import ROW_GROUP_SIZE, write_trace
from tests.builders import access, two_vm_meta, write_rows

if TYPE_CHECKING:
    from pathlib import Path


def test_written_trace_is_zstd_with_statistics_and_footer(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "t.parquet", [access(1), access(5, gpa=0x9000)])
    md = pq.read_metadata(path)
    assert FOOTER_KEY.encode() in md.metadata
    col = md.row_group(0).column(0)
    assert col.path_in_schema == "t_ns"
    assert col.compression == "ZSTD"
    assert col.statistics.has_min_max
    assert (col.statistics.min, col.statistics.max) == (1, 5)


def test_rows_are_written_in_row_groups_of_the_fixed_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Row groups hold ROW_GROUP_SIZE rows (the last one the rest), each with its own time
    statistics, so a reader streams a group at a time and prunes groups by time."""
    import replay.trace.writer as writer

    assert ROW_GROUP_SIZE == writer.ROW_GROUP_SIZE
    monkeypatch.setattr(writer, "ROW_GROUP_SIZE", 4)
    path = write_rows(tmp_path / "t.parquet", [access(t, gpa=t << 12) for t in range(1, 11)])
    md = pq.read_metadata(path)
    assert [md.row_group(i).num_rows for i in range(md.num_row_groups)] == [4, 4, 2]
    bounds = [
        (md.row_group(i).column(0).statistics.min, md.row_group(i).column(0).statistics.max)
        for i in range(md.num_row_groups)
    ]
    assert bounds == [(1, 4), (5, 8), (9, 10)]
    enum_column = md.schema.names.index("event")
    assert not md.row_group(0).column(enum_column).is_stats_set


def test_error_inside_the_block_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    with pytest.raises(RuntimeError), write_trace(path, two_vm_meta()):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_interrupt_leaves_no_file(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    with pytest.raises(KeyboardInterrupt), write_trace(path, two_vm_meta()):
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_missing_output_folder(tmp_path: Path) -> None:
    with (
        pytest.raises(OutputPathError, match="does not exist; create it"),
        write_trace(tmp_path / "no" / "t.parquet", two_vm_meta()),
    ):
        pass


def test_output_is_a_folder(tmp_path: Path) -> None:
    with pytest.raises(OutputPathError, match="is a folder"), write_trace(tmp_path, two_vm_meta()):
        pass
