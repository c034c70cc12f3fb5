"""`replay convert` and `replay synth --as` as a user runs them, with bad input tried."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pyarrow as pa

from tests.convert.helpers import LOGS
from tests.integration.test_cli import assert_usage_error, assert_user_error, replay

if TYPE_CHECKING:
    from pathlib import Path

SAMPLE = LOGS.parents[0] / "samples" / "quick.parquet"


def test_convert_then_run(tmp_path: Path) -> None:
    out = tmp_path / "t.parquet"
    proc = replay(
        "convert",
        str(LOGS / "ftrace-kvm-head.txt"),
        str(LOGS / "ftrace-vmscan-dropcaches.txt"),
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "events used:" in proc.stderr
    assert "wrote" in proc.stderr
    assert "warning: kvm_mmu_get_page roles without 'direct'" in proc.stderr
    run = replay("run", str(out), "-o", str(tmp_path / "runs"))
    assert run.returncode == 0, run.stderr
    assert "faults-only trace" in run.stdout
    assert "Observed in the log vs replayed" in run.stdout
    assert "page-table pages zapped" in run.stdout


def test_convert_json(tmp_path: Path) -> None:
    proc = replay(
        "convert",
        str(LOGS / "perf-script-kvm-head.txt"),
        "-o",
        str(tmp_path / "t.parquet"),
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1
    assert doc["command"] == "convert"
    assert doc["files"][0]["layout"] == "perf"
    assert doc["lines"] == 160
    assert doc["rows"]["access"] == doc["events"]["kvm_mmu_spte_requested"]
    assert doc["unused_events"]["kvm_mmu_set_spte"] > 0


def test_compressed_logs_and_stdin(tmp_path: Path) -> None:
    text = (LOGS / "public-kvm-page-fault-lkml-2022.txt").read_bytes()
    gz = tmp_path / "log.txt.gz"
    gz.write_bytes(gzip.compress(text))
    zst = tmp_path / "log.txt.zst"
    with pa.CompressedOutputStream(str(zst), "zstd") as fh:
        fh.write(text)
    for src in (gz, zst):
        proc = replay("convert", str(src), "-o", str(tmp_path / f"{src.suffix}.parquet"), "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["rows"]["access"] == 7
    piped = subprocess.run(
        [
            sys.executable,
            "-m",
            "replay",
            "convert",
            "-",
            "-o",
            str(tmp_path / "in.parquet"),
            "--json",
        ],
        input=text,
        capture_output=True,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    doc = json.loads(piped.stdout)
    assert doc["rows"]["access"] == 7
    assert doc["files"][0]["path"] == "<stdin>"


def test_truncated_last_line_is_counted(tmp_path: Path) -> None:
    lines = (LOGS / "ftrace-kvm-head.txt").read_text().splitlines()
    last = max(i for i, x in enumerate(lines) if "kvm_mmu_spte_requested" in x)
    cut = tmp_path / "cut.txt"
    # The capture stopped in the middle of a fault line.
    cut.write_text("\n".join(lines[:last]) + "\n" + lines[last][:-12])
    proc = replay("convert", str(cut), "-o", str(tmp_path / "t.parquet"), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["skipped"] == {"header line": 12, "truncated last line": 1}
    assert doc["rows"]["access"] == sum("kvm_mmu_spte_requested" in x for x in lines) - 1
    assert doc["examples"][0].startswith(f"{cut}:{last + 1}: truncated last line")
    strict = replay("convert", str(cut), "-o", str(tmp_path / "s.parquet"), "--strict")
    assert_user_error(strict, f"{cut}:{last + 1}", "--strict")
    assert not (tmp_path / "s.parquet").exists()


def test_bad_input(tmp_path: Path) -> None:
    out = str(tmp_path / "t.parquet")
    assert_user_error(replay("convert", str(SAMPLE), "-o", out), "binary file")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert_user_error(replay("convert", str(empty), "-o", out), "empty")
    assert_user_error(replay("convert", str(tmp_path / "none.txt"), "-o", out), "does not exist")
    # Only events a replay does not know: sched_process_exec lines of a real capture.
    sched = tmp_path / "sched.txt"
    sched.write_text(
        "\n".join(
            x
            for x in (LOGS / "capture-ftrace-tgid-dropcaches.txt").read_text().splitlines()
            if "sched_process_exec" in x
        )
        + "\n"
    )
    assert_user_error(
        replay("convert", str(sched), "-o", out), "no event a replay can use", "sched_process_exec"
    )
    # Pressure only: no VM to replay.
    assert_user_error(
        replay("convert", str(LOGS / "public-vmscan-kswapd-shrink-slab-lkml-2020.txt"), "-o", out),
        "no KVM event",
    )
    # ftrace and perf lines in one file.
    mixed = tmp_path / "mixed.txt"
    mixed.write_text(
        (LOGS / "ftrace-kvm-head.txt").read_text() + (LOGS / "perf-script-kvm-head.txt").read_text()
    )
    assert_user_error(replay("convert", str(mixed), "-o", out), "mixes perf script lines")
    # A mail-wrapped excerpt: every event line broken at 72 columns.
    wrapped = tmp_path / "wrapped.txt"
    lines = (LOGS / "public-kvm-page-fault-lkml-2022.txt").read_text().splitlines()
    wrapped.write_text("\n".join(part for x in lines for part in (x[:72], x[72:])) + "\n")
    proc = replay("convert", str(wrapped), "-o", out)
    assert_user_error(proc, "no event a replay can use", "malformed line", "mail client")
    for option, value in (
        ("--format", "xml"),
        ("--fault-codes", "arm"),
        ("--access-source", "kvm_exit"),
        ("--mmu", "ept"),
    ):
        proc = replay("convert", str(LOGS / "ftrace-kvm-head.txt"), "-o", out, option, value)
        assert_usage_error(proc, option, value)
    assert_user_error(
        replay(
            "convert", str(LOGS / "ftrace-kvm-head.txt"), "-o", str(tmp_path / "no" / "t.parquet")
        ),
        "does not exist",
    )
    bad_cfg = tmp_path / "vms.toml"
    bad_cfg.write_text('[[vm]]\nname = "a"\ntgid = 5\nvcpu = 2\n')
    assert_user_error(
        replay(
            "convert", str(LOGS / "ftrace-kvm-head.txt"), "-o", out, "--vm-config", str(bad_cfg)
        ),
        "unknown key 'vcpu'",
    )
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".parquet"] == []


def test_synth_as_each_layout_converts_back(tmp_path: Path) -> None:
    for layout in ("ftrace", "perf", "trace-cmd"):
        log = tmp_path / f"quick.{layout}.txt"
        proc = replay("synth", "quick", "--accesses", "2000", "--as", layout, "-o", str(log))
        assert proc.returncode == 0, proc.stderr
        assert "VMs in" in proc.stderr
        assert "1 shrink" in proc.stderr  # left out: no kernel text converts back
        back = replay(
            "convert",
            str(log),
            "-o",
            str(tmp_path / f"{layout}.parquet"),
            "--vm-config",
            f"{log}.vms.toml",
            "--json",
        )
        assert back.returncode == 0, back.stderr
        doc = json.loads(back.stdout)
        assert doc["rows"]["access"] == 2000
        assert doc["files"][0]["layout"] == layout


def test_synth_as_an_unknown_layout_is_a_usage_error(tmp_path: Path) -> None:
    proc = replay("synth", "quick", "--as", "xml", "-o", str(tmp_path / "q.txt"))
    assert_usage_error(proc, "--as", "xml")
    assert list(tmp_path.iterdir()) == []
