"""The real command line, as a user runs it: exit codes, one-line errors, no partial files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.builders import TINY_SCENARIO, access, write_rows

ROOT = Path(__file__).resolve().parents[2]


def replay(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "replay", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
        check=False,
    )


def assert_user_error(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def assert_usage_error(proc: subprocess.CompletedProcess[str], option: str, value: str) -> None:
    """Typer refused ``option``'s ``value`` before the command ran: exit 2, nothing on stdout."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert f"Invalid value for '{option}'" in proc.stderr
    assert f"'{value}' is not one of" in proc.stderr


def test_help_lists_every_command() -> None:
    proc = replay("--help")
    assert proc.returncode == 0
    for command in ("run", "synth", "inspect", "diff", "report", "fleet"):
        assert command in proc.stdout


def test_no_arguments_shows_help() -> None:
    proc = replay()
    assert "Usage" in proc.stdout + proc.stderr


def test_unknown_option_is_a_usage_error() -> None:
    assert replay("inspect", "--jsn", "x.parquet").returncode == 2


def test_synth_then_inspect_json(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text(TINY_SCENARIO)
    out = tmp_path / "t.parquet"
    proc = replay("synth", str(scenario), "-o", str(out), "--seed", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1
    assert doc["seed"] == 3
    assert doc["accesses"] == 5000
    proc = replay("inspect", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    for key in (
        "schema_version",
        "vms",
        "t_first_ns",
        "t_last_ns",
        "coverage",
        "size_bytes",
        "events_by_kind",
    ):
        assert key in doc
    assert doc["events_by_kind"]["access"] == 5000
    assert doc["vms"][0]["mmu_mode"] == "shadow_direct"
    human = replay("inspect", str(out))
    assert human.returncode == 0
    assert "shadow_direct" in human.stdout
    assert "all-accesses" in human.stdout


def test_synth_by_name_and_list(tmp_path: Path) -> None:
    proc = replay("synth", "--list")
    assert proc.returncode == 0
    assert "legacy-mmu-pressure" in proc.stdout
    proc = replay("synth", "quick", "--accesses", "1000", "-o", str(tmp_path / "q.parquet"))
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stderr
    again = replay("synth", "quick", "--accesses", "1000", "-o", str(tmp_path / "q.parquet"))
    assert_user_error(again, "exists; pass --force")


def test_synth_without_scenario_is_a_usage_error() -> None:
    assert replay("synth").returncode == 2


def test_csv_renamed_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_text("t_ns,event\n1,access\n")
    assert_user_error(replay("inspect", str(path)), str(path), "not a readable Parquet file")


def test_missing_file(tmp_path: Path) -> None:
    assert_user_error(replay("inspect", str(tmp_path / "nope.parquet")), "does not exist")


def test_missing_column(tmp_path: Path) -> None:
    src = write_rows(tmp_path / "a.parquet", [access(1)])
    table = pq.read_table(src).drop_columns(["gpa"])
    dst = tmp_path / "b.parquet"
    pq.write_table(table.replace_schema_metadata(pq.read_metadata(src).metadata), dst)
    assert_user_error(replay("inspect", str(dst)), "column 'gpa' is missing")


def test_unsorted_trace(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "u.parquet", [access(5), access(3)])
    assert_user_error(replay("inspect", str(path)), "row 1", "t_ns goes backwards", "sort")


def test_future_schema_version(tmp_path: Path) -> None:
    src = write_rows(tmp_path / "a.parquet", [access(1)])
    meta = pq.read_metadata(src).metadata
    footer = meta[b"replay.trace"].replace(b'"schema_version":2', b'"schema_version":3')
    dst = tmp_path / "f.parquet"
    pq.write_table(pq.read_table(src).replace_schema_metadata({b"replay.trace": footer}), dst)
    assert_user_error(replay("inspect", str(dst)), "schema version 3 is not supported", "upgrade")


@pytest.mark.parametrize(
    ("old", "new", "fragment"),
    [
        ("vcpus = 2", "vpcus = 2", "did you mean 'vcpus'"),
        ('size = "64MiB"', "size = -4096", "must be positive"),
    ],
)
def test_bad_scenario_leaves_no_output(tmp_path: Path, old: str, new: str, fragment: str) -> None:
    scenario = tmp_path / "bad.toml"
    scenario.write_text(TINY_SCENARIO.replace(old, new))
    out = tmp_path / "t.parquet"
    assert_user_error(replay("synth", str(scenario), "-o", str(out)), fragment)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_output_in_a_missing_folder(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "t.parquet"
    assert_user_error(replay("synth", "quick", "-o", str(out)), "does not exist; create it")
    assert list(tmp_path.iterdir()) == []


def test_shorthand_runs_the_replay(tmp_path: Path) -> None:
    """`replay TRACE.parquet` is `replay run TRACE.parquet` (runs/<stem>/ in the cwd)."""
    path = write_rows(tmp_path / "t.parquet", [access(1)])
    proc = replay(str(path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "runs" / "t").iterdir()) == ["cache", "none", "zap"]


def test_interrupted_synth_leaves_nothing(tmp_path: Path) -> None:
    """Ctrl-C mid-write: the temporary file goes, no trace appears."""
    import signal
    import time

    out = tmp_path / "big.parquet"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replay",
            "synth",
            "legacy-mmu-pressure",
            "--accesses",
            "30000000",
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not any(p.name.endswith(".partial") for p in tmp_path.iterdir()):
        assert time.monotonic() < deadline, "the writer never started"
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_plain_strings_from_another_writer_inspect(tmp_path: Path) -> None:
    src = write_rows(tmp_path / "a.parquet", [access(1, op="write")])
    table = pq.read_table(src)
    table = table.set_column(1, "event", table.column("event").cast(pa.string()))
    dst = tmp_path / "b.parquet"
    pq.write_table(table.replace_schema_metadata(pq.read_metadata(src).metadata), dst)
    proc = replay("inspect", str(dst), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["events_by_kind"]["access"] == 1


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("extra", [[], ["--as", "ftrace"]])
def test_output_where_no_file_can_be_made(extra: list[str]) -> None:
    """/proc refuses new files even to root, whose permission bits say it may write there."""
    proc = replay("synth", "quick", *extra, "-o", "/proc/kvm-mmu-replay-out")
    assert_user_error(proc, "/proc is not writable", "choose another path")
