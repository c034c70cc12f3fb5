"""`replay fleet` as a user runs it: same answers as replay run, resume, failures, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.fleet.conftest import SCENARIOS, SWEEP
from tests.fleet.helpers import (
    assert_same_fleet_runs,
    assert_same_run,
    job_folders,
    no_leftovers,
    replay,
)


def _assert_one_error_line(proc: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def _job(fleet: Path, trace: str, point: str) -> Path:
    (folder,) = [p for p in (fleet / "runs").iterdir() if p.name.rsplit("-", 1)[0] == trace]
    return folder / point


def test_inprocess_fleet_gives_replay_runs_answers(
    inprocess_fleet: Path, plain_runs: dict[str, Path], traces: Path, tmp_path: Path
) -> None:
    assert len(plain_runs) == len(SCENARIOS) >= 6
    assert len(job_folders(inprocess_fleet)) == 2 * len(SCENARIOS)
    for name, plain in plain_runs.items():
        for policy in ("zap", "none", "cache"):
            assert_same_run(
                _job(inprocess_fleet, name, "cache_capacity=40") / policy, plain / policy
            )
    # Any point of a sweep is reproduced alone by replay run --model.
    model = tmp_path / "model.toml"
    model.write_text("cache_capacity = 20\n")
    trace = next(traces.rglob("many-small-vms-1.parquet"))
    proc = replay("run", str(trace), "--model", str(model), "-o", str(tmp_path / "m20"))
    assert proc.returncode == 0, proc.stderr
    for policy in ("zap", "none", "cache"):
        assert_same_run(
            _job(inprocess_fleet, "many-small-vms-1", "cache_capacity=20") / policy,
            tmp_path / "m20" / policy,
        )
    summary = json.loads((tmp_path / "m20" / "cache" / "summary.json").read_text())
    assert summary["config"]["mmu"]["cache_capacity"] == 20
    assert no_leftovers(inprocess_fleet) == []


def test_fleet_table_and_summary(inprocess_fleet: Path) -> None:
    table = pl.read_parquet(inprocess_fleet / "fleet.parquet")
    assert table.height == len(SCENARIOS) * 2 * 3
    assert set(table["status"]) == {"ok"}
    for column in (
        "trace",
        "fingerprint",
        "vms",
        "cache_capacity",
        "policy",
        "faults_by_attribution.zapped_page_tables",
        "stall_ns_by_attribution.cache_eviction",
        "pages_freed",
    ):
        assert column in table.columns
    # Each row's numbers are its run's totals.
    row = table.filter(
        (pl.col("trace") == "quick-1")
        & (pl.col("policy") == "zap")
        & (pl.col("cache_capacity") == 20)
    ).row(0, named=True)
    summary = json.loads(
        (_job(inprocess_fleet, "quick-1", "cache_capacity=20") / "zap" / "summary.json").read_text()
    )
    assert row["faults"] == summary["totals"]["faults"]
    assert (
        row["faults_by_attribution.zapped_page_tables"]
        == summary["totals"]["faults_by_attribution"]["zapped_page_tables"]
    )
    assert row["fingerprint"] == summary["trace"]["fingerprint"]
    doc = json.loads((inprocess_fleet / "fleet.json").read_text())
    assert doc["schema_version"] == 1
    assert doc["state"] == "complete"
    assert doc["counts"] == {"traces": 6, "jobs": 12, "done": 12, "skipped": 0, "failed": 0}
    dist = doc["distributions"]["cache_capacity=20"]["zap"]["pages_freed"]
    freed = sorted(
        table.filter((pl.col("policy") == "zap") & (pl.col("cache_capacity") == 20))["pages_freed"]
    )
    assert dist["n"] == 6
    assert dist["min"] == freed[0]
    assert dist["max"] == freed[-1]
    assert len(doc["worst"]) == 10
    stalls = [w["shrinker_stall_ns"] for w in doc["worst"]]
    assert stalls == sorted(stalls, reverse=True)
    assert stalls[0] == table["shrinker_stall_ns"].max()
    # The frontier: a point is on it iff no other frees as much for less stall.
    for entry in doc["frontier"]:
        sub = table.filter(
            (pl.col("trace") == entry["trace"]) & (pl.col("policy") == entry["policy"])
        )
        pts = {
            r["point"]: (r["pages_freed"], r["shrinker_stall_ns"])
            for r in sub.iter_rows(named=True)
        }
        on = {p["point"] for p in entry["points"]}
        for p, (freed_p, stall_p) in pts.items():
            beaten = any(
                f >= freed_p and s <= stall_p and (f, s) != (freed_p, stall_p)
                for f, s in pts.values()
            )
            assert (p in on) == (not beaten)


def test_local_cluster_gives_the_same_runs(
    inprocess_fleet: Path, traces: Path, tmp_path: Path
) -> None:
    out = tmp_path / "local"
    proc = replay("fleet", str(traces), "-o", str(out), "--workers", "2", *SWEEP)
    assert proc.returncode == 0, proc.stderr
    assert_same_fleet_runs(out, inprocess_fleet)
    assert (
        pl.read_parquet(out / "fleet.parquet")
        .drop("source")
        .equals(pl.read_parquet(inprocess_fleet / "fleet.parquet").drop("source"))
    )
    assert "Across traces at sweep point cache_capacity=20" in proc.stdout
    assert "Worst traces by estimated shrinker stall" in proc.stdout
    # The same command again redoes nothing, and says so.
    again = replay("fleet", str(traces), "-o", str(out), "--workers", "2", *SWEEP, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["counts"]["skipped"] == 12


def test_resume_after_ctrl_c(inprocess_fleet: Path, traces: Path, tmp_path: Path) -> None:
    out = tmp_path / "resumed"
    cmd = [
        sys.executable,
        "-m",
        "replay",
        "fleet",
        str(traces),
        "-o",
        str(out),
        "--scheduler",
        "inprocess",
        *SWEEP,
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while len(list(out.glob("runs/*/*/job.json"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    done = {p.parent: p.stat().st_mtime_ns for p in out.glob("runs/*/*/job.json")}
    assert 4 <= len(done) < 12
    stamps = {f: f.stat().st_mtime_ns for job in done for f in job.rglob("*") if f.is_file()}
    assert not (out / "fleet.parquet").exists()
    again = replay(*cmd[3:], "--json")
    assert again.returncode == 0, again.stderr
    doc = json.loads(again.stdout)
    assert doc["counts"]["skipped"] == len(done)
    assert doc["counts"]["done"] == 12 - len(done)
    assert {f: f.stat().st_mtime_ns for f in stamps} == stamps  # finished jobs untouched
    assert pl.read_parquet(out / "fleet.parquet").equals(
        pl.read_parquet(inprocess_fleet / "fleet.parquet")
    )
    assert_same_fleet_runs(out, inprocess_fleet)
    assert no_leftovers(out) == []


def _corrupt_and_other_version(folder: Path, good: Path) -> None:
    import pyarrow.parquet as pq

    (folder / "corrupt.parquet").write_bytes(b"PAR1" + os.urandom(4000) + b"PAR1")
    table = pq.read_table(good)
    meta = dict(pq.ParquetFile(good).metadata.metadata)
    footer = json.loads(meta[b"replay.trace"])
    footer["schema_version"] = 99
    meta[b"replay.trace"] = json.dumps(footer).encode()
    pq.write_table(table.replace_schema_metadata(meta), folder / "future.parquet")


def test_bad_traces_fail_their_jobs_only(traces: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    good = traces / "quick-1.parquet"
    (folder / "good.parquet").write_bytes(good.read_bytes())
    _corrupt_and_other_version(folder, good)
    out = tmp_path / "f"
    proc = replay(
        "fleet", str(folder), "-o", str(out), "--scheduler", "inprocess", "--policy", "zap"
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    table = pl.read_parquet(out / "fleet.parquet")
    status = dict(zip(table["trace"], table["status"], strict=True))
    assert status == {"corrupt": "failed", "future": "failed", "good": "ok"}
    errors = dict(zip(table["trace"], table["error"], strict=True))
    assert "corrupt.parquet" in errors["corrupt"]
    assert "\n" not in errors["corrupt"]
    assert "version" in errors["future"]
    assert "99" in errors["future"]
    assert "2 failed" in proc.stderr
    assert any(
        line.startswith("failed: corrupt at default: trace ") for line in proc.stderr.splitlines()
    )


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--sweep", "cache_size=1,2"), ("unknown sweep key 'cache_size'",)),
        (("--sweep", "seeks=two"), ("'two'", "not a whole number")),
        (("--policy", "zip"), ("unknown policy 'zip'",)),
        (
            ("--scheduler", "tcp://127.0.0.1:9", "--workers", "2"),
            ("--workers sets the size of the local cluster",),
        ),
    ],
)
def test_bad_options(
    traces: Path, tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    proc = replay(
        "fleet", str(traces), "-o", str(tmp_path / "f"), "--scheduler", "inprocess", *args
    )
    _assert_one_error_line(proc, *fragments)
    assert not (tmp_path / "f").exists()


def test_an_unknown_mmu_mode_is_a_usage_error(traces: Path, tmp_path: Path) -> None:
    proc = replay("fleet", str(traces), "-o", str(tmp_path / "f"), "--mmu", "ept")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "'ept' is not one of 'tdp_mmu', 'shadow_direct'" in lines[0]
    assert not (tmp_path / "f").exists()


def test_empty_folder_and_missing_input(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    proc = replay(
        "fleet", str(tmp_path / "empty"), "-o", str(tmp_path / "f"), "--scheduler", "inprocess"
    )
    _assert_one_error_line(proc, "holds no trace")
    proc = replay(
        "fleet", str(tmp_path / "nope"), "-o", str(tmp_path / "f"), "--scheduler", "inprocess"
    )
    _assert_one_error_line(proc, "does not exist")
    proc = replay(
        "fleet", str(tmp_path / "*.parquet"), "-o", str(tmp_path / "f"), "--scheduler", "inprocess"
    )
    _assert_one_error_line(proc, "matches no trace")


def test_a_fleet_of_other_settings_is_refused_unless_force(traces: Path, tmp_path: Path) -> None:
    one = str(traces / "quick-1.parquet")
    out = tmp_path / "f"
    first = replay("fleet", one, "-o", str(out), "--scheduler", "inprocess", "--policy", "zap")
    assert first.returncode == 0, first.stderr
    proc = replay(
        "fleet",
        one,
        "-o",
        str(out),
        "--scheduler",
        "inprocess",
        "--policy",
        "zap",
        "--sweep",
        "seeks=2",
    )
    _assert_one_error_line(proc, "holds a fleet of other settings", "sweeps", "--force")
    forced = replay(
        "fleet",
        one,
        "-o",
        str(out),
        "--scheduler",
        "inprocess",
        "--policy",
        "zap",
        "--sweep",
        "seeks=2",
        "--force",
    )
    assert forced.returncode == 0, forced.stderr
    assert [p.name for p in job_folders(out)] == ["seeks=2"]


def test_unreachable_scheduler_is_one_line_within_seconds(traces: Path, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    started = time.monotonic()
    proc = replay(
        "fleet",
        str(traces / "quick-1.parquet"),
        "-o",
        str(tmp_path / "f"),
        "--scheduler",
        f"tcp://127.0.0.1:{port}",
    )
    assert time.monotonic() - started < 20  # the CLI's own start-up included
    _assert_one_error_line(proc, f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}")
    assert not (tmp_path / "f").exists()  # nothing written before the cluster was reached


def test_without_dask_it_says_how_to_install_it(traces: Path, tmp_path: Path) -> None:
    # A `distributed` that cannot be imported, first on the path: as if Dask were not installed.
    fake = tmp_path / "nodask" / "distributed"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no Dask here')\n")
    proc = replay(
        "fleet",
        str(traces / "quick-1.parquet"),
        "-o",
        str(tmp_path / "f"),
        env={"PYTHONPATH": str(fake.parent)},
    )
    _assert_one_error_line(proc, 'pip install "kvm-mmu-replay[fleet]"')


def test_mmu_mode_and_a_cost_sweep_give_replay_runs_answers(traces: Path, tmp_path: Path) -> None:
    trace = traces / "quick-2.parquet"
    out = tmp_path / "f"
    proc = replay(
        "fleet",
        str(trace),
        "-o",
        str(out),
        "--scheduler",
        "inprocess",
        "--policy",
        "zap",
        "--mmu",
        "shadow_direct",
        "--sweep",
        "costs.zap_flush_ns=0,5000",
    )
    assert proc.returncode == 0, proc.stderr
    costs = tmp_path / "costs.toml"
    costs.write_text("zap_flush_ns = 0\n")
    plain = tmp_path / "plain"
    proc = replay(
        "run",
        str(trace),
        "--policy",
        "zap",
        "--mmu",
        "shadow_direct",
        "--costs",
        str(costs),
        "-o",
        str(plain),
    )
    assert proc.returncode == 0, proc.stderr
    assert_same_run(_job(out, "quick-2", "costs.zap_flush_ns=0") / "zap", plain / "zap")
    table = pl.read_parquet(out / "fleet.parquet")
    assert table["costs.zap_flush_ns"].to_list() == [0, 5000]
    assert table["scan_flush_ns"][0] == 0
    assert table["scan_flush_ns"][1] > 0
