"""`replay run` as a user runs it: outputs, the table, JSON, caveats and bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replay.trace.schema import Memslot, TraceMeta, VmSpec
from tests.builders import access, reclaim, write_rows
from tests.integration.test_cli import assert_usage_error, assert_user_error, replay

SAMPLE = Path(__file__).resolve().parents[2] / "traces" / "samples" / "quick.parquet"


def test_run_on_the_sample_prints_policies_side_by_side(tmp_path: Path) -> None:
    proc = replay("run", str(SAMPLE), "-o", str(tmp_path / "runs"))
    assert proc.returncode == 0, proc.stderr
    for text in (
        "zap",
        "none",
        "cache",
        "zapped page tables",
        "cache eviction",
        "pages freed by shrinker",
        "est. stall per freed page",
        "estimates",
    ):
        assert text in proc.stdout
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["cache", "none", "zap"]


def test_run_json_and_policies(tmp_path: Path) -> None:
    proc = replay("run", str(SAMPLE), "--policy", "zap,cache", "--json", "-o", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["schema_version"] == 1
    assert set(doc["runs"]) == {"zap", "cache"}
    zap = doc["runs"]["zap"]["totals"]
    assert zap["faults_by_attribution"]["zapped_page_tables"] > 0
    assert zap["pages_freed"] > 0


def test_reference_engine_gives_the_same_rows(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    for engine in ("fast", "reference"):
        proc = replay(
            "run", str(SAMPLE), "--policy", "zap", "--engine", engine, "-o", str(tmp_path / engine)
        )
        assert proc.returncode == 0, proc.stderr
    for name in ("faults.parquet", "scans.parquet"):
        fast = tmp_path / "fast" / "zap" / name
        ref = tmp_path / "reference" / "zap" / name
        assert pq.read_table(fast).equals(pq.read_table(ref))
        assert fast.read_bytes() == ref.read_bytes()


def test_mmu_override_makes_the_old_shrinker_zap(tmp_path: Path) -> None:
    """--mmu tdp_mmu: the old shrinker never touched TDP MMU pages, so zap frees nothing."""
    proc = replay(
        "run",
        str(SAMPLE),
        "--policy",
        "zap",
        "--mmu",
        "tdp_mmu",
        "--json",
        "-o",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["runs"]["zap"]["totals"]["pages_freed"] == 0


def test_faults_only_trace_carries_the_caveat(tmp_path: Path) -> None:
    meta = TraceMeta(
        vms=(VmSpec(0, "a", 1, "tdp_mmu", 4, (Memslot(0, 1 << 30),)),),
        coverage="faults-only",
        provenance={"generator": "tests"},
    )
    path = write_rows(tmp_path / "f.parquet", [access(1), access(2, gpa=0x5000)], meta)
    proc = replay("run", str(path), "-o", str(tmp_path / "r"))
    assert proc.returncode == 0, proc.stderr
    assert "faults-only trace" in proc.stdout
    summary = json.loads((tmp_path / "r" / "zap" / "summary.json").read_text())
    assert any("faults-only" in c for c in summary["caveats"])


@pytest.mark.parametrize(
    ("rows", "fragment"),
    [
        ([], "has no events"),
        ([reclaim(1), reclaim(2)], "no access events"),
        ([access(1, vcpu=7)], "vCPU 7 of VM 0 is beyond the VM's 2 vCPUs"),
    ],
)
def test_bad_traces(tmp_path: Path, rows: list[dict[str, object]], fragment: str) -> None:
    path = write_rows(tmp_path / "t.parquet", rows)
    assert_user_error(replay("run", str(path), "-o", str(tmp_path / "r")), fragment)
    assert not (tmp_path / "r").exists()


def test_unknown_policy(tmp_path: Path) -> None:
    proc = replay("run", str(SAMPLE), "--policy", "zap,shrink", "-o", str(tmp_path / "r"))
    assert_user_error(proc, "unknown policy 'shrink'")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("option", "value", "choices"),
    [("--mmu", "ept", "'tdp_mmu', 'shadow_direct'"), ("--engine", "gpu", "'fast', 'reference'")],
)
def test_unknown_choice_is_a_usage_error(
    tmp_path: Path, option: str, value: str, choices: str
) -> None:
    proc = replay("run", str(SAMPLE), option, value, "-o", str(tmp_path / "r"))
    assert_usage_error(proc, option, value)
    assert choices in proc.stderr
    assert not (tmp_path / "r").exists()


def test_costs_file_with_unknown_key(tmp_path: Path) -> None:
    costs = tmp_path / "c.toml"
    costs.write_text("fault_base = 1\n")
    proc = replay("run", str(SAMPLE), "--costs", str(costs), "-o", str(tmp_path / "r"))
    assert_user_error(proc, "unknown key 'fault_base'")
    assert not (tmp_path / "r").exists()


def test_unwritable_output(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_user_error(replay("run", str(SAMPLE), "-o", str(blocker / "runs")), "choose another -o")


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux's /proc")
def test_output_in_a_folder_no_file_can_be_made_in() -> None:
    """/proc refuses new folders even to root, whose permission bits say it may write there."""
    assert_user_error(
        replay("run", str(SAMPLE), "-o", "/proc/kvm-mmu-replay-runs"), "choose another -o"
    )


def test_existing_run_is_kept_without_force(tmp_path: Path) -> None:
    out = tmp_path / "r"
    assert replay("run", str(SAMPLE), "--policy", "none", "-o", str(out)).returncode == 0
    assert_user_error(replay("run", str(SAMPLE), "--policy", "none", "-o", str(out)), "--force")
    assert replay("run", str(SAMPLE), "--policy", "none", "-o", str(out), "--force").returncode == 0


def test_ctrl_c_leaves_no_run_directory(tmp_path: Path) -> None:
    big = tmp_path / "big.parquet"
    assert (
        replay("synth", "legacy-mmu-pressure", "--accesses", "3000000", "-o", str(big)).returncode
        == 0
    )
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "replay", "run", str(big), "--engine", "reference", "-o", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.parquet"]
