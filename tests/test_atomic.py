from __future__ import annotations

from pathlib import Path

import pytest

from replay.atomic import atomic_output


def test_folder_output_appears_whole(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with atomic_output(target) as tmp:
        tmp.mkdir()
        (tmp / "a.txt").write_text("x")
        assert not target.exists()
    assert (target / "a.txt").read_text() == "x"


def test_failed_folder_output_is_removed(tmp_path: Path) -> None:
    target = tmp_path / "run"

    def write_half() -> None:
        with atomic_output(target) as tmp:
            tmp.mkdir()
            (tmp / "a.txt").write_text("x")
            raise ValueError("half")

    with pytest.raises(ValueError, match="half"):
        write_half()
    assert list(tmp_path.iterdir()) == []
