from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from replay.cli import app

runner = CliRunner()


def test_synth_writes_and_reports(scenario_file: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    result = runner.invoke(
        app,
        [
            "synth",
            str(scenario_file()),
            "-o",
            str(out),
            "--json",
            "--accesses",
            "1234",
            "--duration",
            "0.5",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["accesses"] == 1234
    assert doc["output"] == str(out)
    assert out.is_file()


def test_force_overwrites(scenario_file: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    out.write_text("old")
    args = ["synth", str(scenario_file()), "-o", str(out)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1
    assert "pass --force" in refused.stderr
    assert out.read_text() == "old"
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert out.read_bytes()[:4] == b"PAR1"


def test_default_output_is_named_after_the_scenario(
    scenario_file: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["synth", str(scenario_file())]).exit_code == 0
    assert (tmp_path / "tiny.parquet").is_file()


def test_list_json() -> None:
    result = runner.invoke(app, ["synth", "--list", "--json"])
    names = [s["name"] for s in json.loads(result.stdout)["scenarios"]]
    assert "quick" in names
