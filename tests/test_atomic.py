from __future__ import annotations

from pathlib import Path

import pytest

from replay.atomic import atomic_output
from replay.errors import OutputPathError


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


def test_unwritable_folder(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root can write anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(OutputPathError, match="not writable"), atomic_output(locked / "x"):
        pass
