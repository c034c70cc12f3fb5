"""Issue 16: Ctrl-C and SIGTERM while a replay runs on several threads leave nothing behind.

The replay of a trace of many VMs splits each epoch between engine lanes and replays the
policies side by side (``replay run --threads``); a signal may land while the main thread waits
for a lane or a policy thread. The command must still end with the one line and the exit code
of a single-threaded run, no partial runs folder, no temporary file, and no thread left running
(the process exits: :meth:`Running.finish` fails a command that does not end in time).
"""

from __future__ import annotations

import shutil
import signal
import time
from typing import TYPE_CHECKING

import pytest

from tests.hostile.runner import Sandbox

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(scope="module")
def many_vms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A many-small-vms trace (100 VMs) of 600,000 accesses: a replay of a second or more."""
    box = Sandbox(tmp_path_factory.mktemp("many"))
    box.run(
        "synth",
        "many-small-vms",
        "--accesses",
        "600000",
        "-o",
        "t.parquet",
        outputs={"t.parquet": "trace"},
    )
    return box.path / "t.parquet"


@pytest.mark.parametrize("threads", ["2", "3", "8"])
@pytest.mark.parametrize(
    ("sig", "code", "line"),
    [
        (signal.SIGINT, 130, None),
        (signal.SIGTERM, 143, "error: terminated (SIGTERM); no partial output"),
    ],
)
def test_signal_during_a_parallel_replay(
    sandbox: Sandbox, many_vms: Path, threads: str, sig: int, code: int, line: str | None
) -> None:
    """The signal lands inside the replay (after the staging folder appears, a moment on)."""
    sandbox.copy(many_vms, "t.parquet")
    for policies, delay in (("zap", 0.3), ("zap,none,cache", 0.6)):
        running = sandbox.start(
            "run", "t.parquet", "-p", policies, "-o", "runs", "--threads", threads
        )
        running.wait_until(lambda: any(sandbox.path.glob(".runs.*.partial")))
        time.sleep(delay)
        running.send(sig)
        got = running.finish(outputs={"runs": "runs"})  # no leftover, or the whole runs
        if got.returncode != 0:
            assert got.returncode == code, got.describe()
            if line is not None:
                assert got.error_line.startswith(line), got.describe()
            assert not (sandbox.path / "runs").exists()
        else:
            # It finished first: the runs are whole (the contract checked them); go on clean.
            shutil.rmtree(sandbox.path / "runs")


def test_threads_must_be_positive(sandbox: Sandbox, many_vms: Path) -> None:
    """--threads 0 is a usage error, refused before anything is read or written."""
    sandbox.copy(many_vms, "t.parquet")
    got = sandbox.run("run", "t.parquet", "-o", "runs", "--threads", "0", check=False)
    assert got.returncode == 2, got.describe()
    assert "--threads" in got.stderr
    assert not (sandbox.path / "runs").exists()
