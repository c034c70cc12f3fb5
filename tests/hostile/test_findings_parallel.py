"""Issue 16: Ctrl-C and SIGTERM while a replay runs on several threads leave nothing behind.

The replay of a trace of many VMs splits each epoch between engine lanes and replays the
policies side by side, in child processes (``replay run --threads``); a signal may land while
the main thread waits for a lane or a child. The command must still end with the one line and
the exit code of a single-threaded run, no partial runs folder, no temporary file, and no thread
or child process left running (the process exits: :meth:`Running.finish` fails a command that
does not end in time; a child must end with it).
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.hostile.runner import Sandbox


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


def _children(pid: int) -> list[int]:
    """The processes ``pid`` has forked (from its main thread) that have not been reaped."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize(
    ("sig", "group", "code"),
    [
        (signal.SIGINT, True, 130),  # Ctrl-C: the terminal signals the whole process group
        (signal.SIGTERM, False, 143),  # timeout(1), kill: the command alone
        (signal.SIGTERM, True, 143),  # a service manager: every process
    ],
)
@pytest.mark.parametrize("threads", ["2", "3"])
def test_signal_during_a_replay_in_processes(
    sandbox: Sandbox, many_vms: Path, sig: int, group: bool, code: int, threads: str
) -> None:
    """The policies replayed in child processes: the command ends as a one-process replay
    does, no partial runs folder, and every child has ended with it."""
    sandbox.copy(many_vms, "t.parquet")
    running = sandbox.start(
        "run", "t.parquet", "-p", "zap,none,cache", "-o", "runs", "--threads", threads
    )
    forked: list[int] = []

    def started() -> bool:
        forked.extend(_children(running.pid))
        return bool(forked)

    assert running.wait_until(started), "the command ended before it forked"
    time.sleep(0.3)
    running.signalled = sig
    if group:
        os.killpg(running.pid, sig)  # its own session: the group holds only the command
    else:
        running.send(sig)
    got = running.finish(outputs={"runs": "runs"})
    if got.returncode != 0:
        assert got.returncode == code, got.describe()
        assert not (sandbox.path / "runs").exists()
    deadline = time.monotonic() + 5
    while any(_running(c) for c in forked) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not [c for c in forked if _running(c)], "a child outlived the command"


def test_threads_must_be_positive(sandbox: Sandbox, many_vms: Path) -> None:
    """--threads 0 is a usage error, refused before anything is read or written."""
    sandbox.copy(many_vms, "t.parquet")
    got = sandbox.run("run", "t.parquet", "-o", "runs", "--threads", "0", check=False)
    assert got.returncode == 2, got.describe()
    assert "--threads" in got.stderr
    assert not (sandbox.path / "runs").exists()
