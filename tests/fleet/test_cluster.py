"""A real Dask cluster: `dask scheduler` and two `dask worker` processes on 127.0.0.1.

The fleet runs from a separate process; one worker is killed (SIGKILL) in the middle of a job:
the fleet still finishes, the job is retried elsewhere, nothing is lost or duplicated. A worker
with another kvm-mmu-replay version is refused by name.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import polars as pl
import pytest

from replay.synth import generate, load_scenario
from tests.fleet.helpers import assert_same_run, job_folders, no_leftovers, replay

if TYPE_CHECKING:
    from collections.abc import Iterator

DASK = str(Path(sys.executable).parent / "dask")


class Cluster:
    """A scheduler and its workers, each a process this test started (and ends)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[BinaryIO] = []
        self.file = root / "scheduler.json"
        self._start(
            DASK,
            "scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(self.file),
        )
        deadline = time.monotonic() + 60
        while not self.file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.2)  # written whole: read it once it has settled
        self.address = str(json.loads(self.file.read_text())["address"])

    def _start(self, *cmd: str, env: dict[str, str] | None = None) -> None:
        log = (self.root / f"proc{len(self.procs)}.log").open("wb")
        self.logs.append(log)
        self.procs.append(
            subprocess.Popen(
                cmd,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
            )
        )

    def add_worker(self, env: dict[str, str] | None = None) -> None:
        self._start(
            DASK,
            "worker",
            self.address,
            "--host",
            "127.0.0.1",
            "--nthreads",
            "1",
            "--no-dashboard",
            "--local-directory",
            str(self.root),
            env=env,
        )

    def wait_for_workers(self, n: int) -> None:
        script = (
            "import sys, distributed; "
            "c = distributed.Client(sys.argv[1], timeout='30s'); "
            "c.wait_for_workers(int(sys.argv[2]), timeout=60); c.close()"
        )
        subprocess.run(
            [sys.executable, "-c", script, self.address, str(n)],
            check=True,
            timeout=120,
            capture_output=True,
        )

    def close(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self.logs:
            log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        c.add_worker()
        c.add_worker()
        c.wait_for_workers(2)
        yield c
    finally:
        c.close()


def test_a_worker_killed_mid_job_costs_nothing(
    cluster: Cluster, traces: Path, plain_runs: dict[str, Path], tmp_path: Path
) -> None:
    # One longer trace, so that a worker can be caught in the middle of its job.
    big = tmp_path / "big" / "quick-big.parquet"
    big.parent.mkdir()
    generate(load_scenario("quick", seed=7, accesses=400_000), big)
    out = tmp_path / "fleet"
    cmd = [
        sys.executable,
        "-m",
        "replay",
        "fleet",
        str(traces),
        str(big),
        "-o",
        str(out),
        "--scheduler",
        cluster.address,
        "--json",
    ]
    fleet = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # A job's temporary folder is named after the worker process that writes it.
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and time.monotonic() < deadline and fleet.poll() is None:
        for partial in out.glob("runs/quick-big-*/.default.*.partial"):
            killed = int(partial.name.removesuffix(".partial").rsplit("-", 1)[1])
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.01)
    assert killed is not None, "no worker was caught running the long job"
    stdout, stderr = fleet.communicate(timeout=300)
    assert fleet.returncode == 0, stderr
    doc = json.loads(stdout)
    counts = doc["counts"]
    assert (counts["jobs"], counts["failed"], counts["done"] + counts["skipped"]) == (7, 0, 7)
    # A job finished by the killed worker before its result reached the client is asked again,
    # finds its runs on disk and is not redone.
    for job in doc["jobs"]:
        if job["status"] == "skipped":
            record = json.loads((out / job["folder"] / "job.json").read_text())
            assert int(record["worker"].rsplit("-", 1)[1]) == killed
    # The long job was retried on a worker process other than the one killed ...
    (big_job,) = [p for p in job_folders(out) if p.parent.name.startswith("quick-big-")]
    record = json.loads((big_job / "job.json").read_text())
    assert int(record["worker"].rsplit("-", 1)[1]) != killed
    # ... and nothing is lost or duplicated: one folder per job, each run whole and equal to
    # replay run's, one table row per job and policy, no temporary folder left.
    assert len(job_folders(out)) == 7
    plain_big = tmp_path / "plain-big"
    proc = replay("run", str(big), "-o", str(plain_big))
    assert proc.returncode == 0, proc.stderr
    for policy in ("zap", "none", "cache"):
        assert_same_run(big_job / policy, plain_big / policy)
        for name, plain in plain_runs.items():
            (job,) = [p for p in job_folders(out) if p.parent.name.rsplit("-", 1)[0] == name]
            assert_same_run(job / policy, plain / policy)
    table = pl.read_parquet(out / "fleet.parquet")
    assert table.height == 7 * 3
    assert table.select("trace", "policy").is_unique().all()
    assert set(table["status"]) == {"ok"}
    assert no_leftovers(out) == []


def test_a_worker_of_another_version_is_refused_by_name(
    cluster: Cluster, traces: Path, tmp_path: Path
) -> None:
    # A worker whose Python finds kvm-mmu-replay 9.9.9 first: as if another version were installed.
    site = tmp_path / "other-version"
    dist = site / "kvm_mmu_replay-9.9.9.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: kvm-mmu-replay\nVersion: 9.9.9\n")
    cluster.add_worker(env={"PYTHONPATH": str(site)})
    cluster.wait_for_workers(3)
    proc = replay("fleet", str(traces), "-o", str(tmp_path / "f"), "--scheduler", cluster.address)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: worker tcp://127.0.0.1:")
    assert "runs kvm-mmu-replay 9.9.9" in lines[0]
    assert "install the same version on every worker" in lines[0]
