"""Traces in an S3-compatible store (moto's server on 127.0.0.1), read through s3:// URIs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.fleet.helpers import assert_same_run, job_folders, replay

if TYPE_CHECKING:
    from collections.abc import Iterator

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``127.0.0.1:PORT`` of a moto S3 server started for this module, and stopped after it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp_path_factory.mktemp("moto") / "moto.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()


def test_traces_in_an_object_store_give_the_same_runs(
    s3_endpoint: str, traces: Path, plain_runs: dict[str, Path], tmp_path: Path
) -> None:
    import pyarrow.fs as pafs

    s3 = pafs.S3FileSystem(
        endpoint_override=s3_endpoint,
        scheme="http",
        region="us-east-1",
        access_key="testing",
        secret_key="testing",
        allow_bucket_creation=True,
    )
    s3.create_dir("fleet-traces")
    names = ["quick-1", "many-small-vms-1", "tdp-host-pressure-2"]
    for name in names:
        (local,) = traces.rglob(f"{name}.parquet")
        pafs.copy_files(
            str(local),
            f"fleet-traces/corpus/{name}.parquet",
            source_filesystem=pafs.LocalFileSystem(),
            destination_filesystem=s3,
        )
    uri = f"s3://fleet-traces/corpus/?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    out = tmp_path / "fleet"
    proc = replay("fleet", uri, "-o", str(out), "--scheduler", "inprocess", env=CREDENTIALS)
    assert proc.returncode == 0, proc.stderr
    jobs = job_folders(out)
    assert sorted(p.parent.name.rsplit("-", 1)[0] for p in jobs) == sorted(names)
    for job in jobs:
        name = job.parent.name.rsplit("-", 1)[0]
        for policy in ("zap", "none", "cache"):
            assert_same_run(job / policy, plain_runs[name] / policy)
        summary = (job / "zap" / "summary.json").read_text()
        assert f"s3://fleet-traces/corpus/{name}.parquet" in summary
    # The workers' temporary copies are gone.
    assert not list(Path(tempfile_dir()).glob(".replay-fleet-*"))
    # A prefix that holds nothing is one clear line.
    empty = f"s3://fleet-traces/none/?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    proc = replay(
        "fleet", empty, "-o", str(tmp_path / "f2"), "--scheduler", "inprocess", env=CREDENTIALS
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: trace s3://fleet-traces/none/")
    assert len(proc.stderr.strip().splitlines()) == 1


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()
