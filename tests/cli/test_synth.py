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


HOSTILE_NAMES = [
    # (the name, as a TOML basic string literal written by hand)
    ('we"b\\x', r'"we\"b\\x"'),
    ("a[/]b[red]", '"a[/]b[red]"'),
    ("esc\x1b[31mred\x07", r'"esc\u001b[31mred\u0007"'),
    ("tab\tdel\x7f", r'"tab\tdel\u007f"'),
    ("ñ€ 😀", '"ñ€ 😀"'),
]


def test_hostile_vm_names_round_trip_through_synth_as_and_convert(tmp_path: Path) -> None:
    """Issue 12 item 12: ``synth --as`` writes VM names into its ``.vms.toml`` escaped, so
    ``convert --vm-config`` reads back exactly the names the scenario gave."""
    vms = "".join(
        f"""
[[vm]]
name = {literal}
vcpus = 1
memslots = [{{ gpa_start = 0, size = "64MiB" }}]

[[vm.workload]]
kind = "uniform"
rate = 1000
"""
        for _, literal in HOSTILE_NAMES
    )
    scenario = tmp_path / "s.toml"
    scenario.write_text(
        f'[scenario]\nname = "names"\nduration_s = 0.5\naccesses = 500\n{vms}', encoding="utf-8"
    )
    log = tmp_path / "log.txt"
    result = runner.invoke(app, ["synth", str(scenario), "--as", "ftrace", "-o", str(log)])
    assert result.exit_code == 0, result.output
    config = log.with_name(log.name + ".vms.toml")
    trace = tmp_path / "t.parquet"
    result = runner.invoke(app, ["convert", str(log), "--vm-config", str(config), "-o", str(trace)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["inspect", str(trace), "--json"])
    assert result.exit_code == 0, result.output
    # convert orders the VMs as the log first shows them: the names are compared as a set.
    names = sorted(vm["name"] for vm in json.loads(result.stdout)["vms"])
    assert names == sorted(n for n, _ in HOSTILE_NAMES)
