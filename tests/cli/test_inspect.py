from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from replay.cli import app
from tests.builders import access, reclaim, write_rows

runner = CliRunner()


def test_inspect_json_and_text(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "t.parquet", [access(1_000), reclaim(2_000), access(3_000, vm=5)])
    result = runner.invoke(app, ["inspect", str(path), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["events_by_kind"] == {
        "access": 2,
        "reclaim": 1,
        "shrink": 0,
        "unmap": 0,
        "zap_all": 0,
        "region": 0,
    }
    assert (doc["t_first_ns"], doc["t_last_ns"]) == (1_000, 3_000)
    assert doc["events_by_vm"]["5"]["access"] == 1
    text = runner.invoke(app, ["inspect", str(path)])
    assert text.exit_code == 0
    assert "shadow_direct" in text.stdout
    assert "kswapd 1" in text.stdout


def test_inspect_a_folder(tmp_path: Path) -> None:
    result = runner.invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 1
    assert "is a folder" in result.stderr
