"""A bug in the tool itself: the one exception to "no traceback" (issue 12, closing note).

Such a bug must say so in one line, and where to report it, with the traceback behind a debug
switch. No production hook induces one: the tests run the real entry point (the ``replay``
console script's ``replay.cli:main``) in a child interpreter whose ``json.dumps`` and
``json.dump`` raise, so ``inspect --json`` fails where no user input can reach. The switch these
tests expect, proposed for the fix: the environment variable ``REPLAY_DEBUG=1``.
"""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

from tests.hostile.runner import environment

if TYPE_CHECKING:
    from pathlib import Path

    from tests.hostile.runner import Sandbox

BUG = "injected bug 7f3a"
PROGRAM = f"""
import json, sys

def broken(*args, **kwargs):
    raise RuntimeError({BUG!r})

json.dumps = json.dump = broken
sys.argv = ["replay", *sys.argv[1:]]
from replay.cli import main
main()
"""


def run_with_a_bug(
    folder: Path, *args: str, debug: bool = False
) -> subprocess.CompletedProcess[str]:
    env = environment({"REPLAY_DEBUG": "1"} if debug else None)
    return subprocess.run(
        [sys.executable, "-c", PROGRAM, *args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_injected_bug_is_reached(sandbox: Sandbox, small_trace: Path) -> None:
    """The precondition of the tests below: the bug fires inside the command."""
    sandbox.copy(small_trace, "t.parquet")
    got = run_with_a_bug(sandbox.path, "inspect", "t.parquet", "--json")
    assert got.returncode != 0
    assert BUG in got.stderr


def test_a_bug_is_one_line_saying_so_and_where_to_report_it(
    sandbox: Sandbox, small_trace: Path
) -> None:
    sandbox.copy(small_trace, "t.parquet")
    got = run_with_a_bug(sandbox.path, "inspect", "t.parquet", "--json")
    lines = got.stderr.strip().splitlines()
    assert "Traceback" not in got.stderr
    assert len(lines) == 1, got.stderr
    line = lines[0].lower()
    assert line.startswith("error:")
    assert "bug" in line or "internal error" in line
    assert "report" in line
    assert BUG in lines[0], "the line says what went wrong"
    assert got.returncode not in (0, 2)


def test_the_traceback_is_behind_replay_debug(sandbox: Sandbox, small_trace: Path) -> None:
    sandbox.copy(small_trace, "t.parquet")
    quiet = run_with_a_bug(sandbox.path, "inspect", "t.parquet", "--json")
    loud = run_with_a_bug(sandbox.path, "inspect", "t.parquet", "--json", debug=True)
    assert "Traceback (most recent call last)" not in quiet.stderr
    assert "Traceback (most recent call last)" in loud.stderr
    assert BUG in loud.stderr
