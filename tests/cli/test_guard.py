"""The outermost layer of the command: usage errors and the tool's own bugs, one line each.

SIGTERM and a closed standard output are findings 13 and 17 of the hostile-input suite
(`tests/hostile/test_findings_outputs.py`), which runs them through the real command.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import typer

from replay.cli._guard import DEBUG_ENV, Terminated, run_guarded
from tests.integration.test_cli import replay

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "traces" / "samples" / "quick.parquet"


def _app_raising(exc: Exception) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    def boom() -> None:
        raise exc

    @app.command()
    def other() -> None:  # two commands, so that the command name is an argument
        pass

    return app


def test_a_bug_is_one_line_that_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run_guarded(_app_raising(ZeroDivisionError("division by zero")), ["boom"])
    assert info.value.code == 70
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: internal error in kvm-mmu-replay (ZeroDivisionError")
    assert "this is a bug" in err
    assert "Traceback" not in err


def test_a_bug_shows_its_traceback_when_asked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit):
        run_guarded(_app_raising(KeyError("k")), ["--debug", "boom"])
    assert "Traceback (most recent call last)" in capsys.readouterr().err
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(SystemExit):
        run_guarded(_app_raising(KeyError("k")), ["boom"])
    assert "Traceback (most recent call last)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["run"], "Missing argument"),
        (["run", str(SAMPLE), "--bogus"], "No such option: --bogus"),
        (["nope"], "No such command 'nope'"),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args: list[str], fragment: str) -> None:
    proc = replay(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert fragment in lines[0]
    assert "--help" in lines[0]


@pytest.mark.parametrize(
    ("stop", "code", "line"),
    [
        (KeyboardInterrupt, 130, "error: interrupted; no partial output was left behind\n"),
        (Terminated, 143, "error: terminated (SIGTERM); no partial output was left behind\n"),
    ],
)
def test_a_stop_while_typer_builds_the_command_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    stop: type[KeyboardInterrupt],
    code: int,
    line: str,
) -> None:
    """Typer reads the command's type hints before click's own Ctrl-C handling starts: a signal
    there escaped as a traceback (exit 1 for SIGTERM, -2 for Ctrl-C; 7 runs in 150)."""
    from replay.cli import _guard

    monkeypatch.setattr(_guard, "_finished", lambda code: None)  # keep this process's handlers

    def building(**kwargs: object) -> None:
        raise stop

    with pytest.raises(SystemExit) as info:
        run_guarded(building, ["run"])
    assert info.value.code == code
    assert capsys.readouterr().err == line


_FINISHED_COMMAND = """
import atexit, os, signal, sys, time
import typer
from replay.cli._guard import run_guarded

app = typer.Typer()

@app.command()
def done() -> None:
    print("written")

@app.command()
def other() -> None:
    pass
"""

_TEARDOWN = (
    _FINISHED_COMMAND
    + """
def late_ctrl_c() -> None:  # Ctrl-C while the interpreter tears itself down
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(2)
    print("teardown went on after the signal", file=sys.stderr)

atexit.register(late_ctrl_c)
run_guarded(app, ["done"])
"""
)

_LAST_TEARDOWN = (
    _FINISHED_COMMAND
    + """
class LateCtrlC:
    def __del__(self) -> None:  # runs as the interpreter frees __main__, its last act
        os.kill(os.getpid(), signal.SIGINT)

keep = LateCtrlC()
run_guarded(app, ["done"])
"""
)


def test_ctrl_c_in_the_last_of_the_teardown_is_no_death_by_sigint() -> None:
    """Past its exit hooks the interpreter puts back the default action of every signal it had
    a Python handler for, then frees its modules (the replay's arrays): a Ctrl-C there killed
    a command that had written everything and said so (exit -2; hostile findings 13 and 17,
    about once in ten suite runs). From then on the signal is ignored."""
    import subprocess
    import sys

    got = subprocess.run(
        [sys.executable, "-c", _LAST_TEARDOWN], capture_output=True, text=True, timeout=60
    )
    assert got.returncode == 0, (got.returncode, got.stderr)
    assert got.stdout == "written\n"


_CAUGHT_IN_GENERATED_CODE = """
import typer
from replay.cli._guard import run_guarded
from replay.cli.console import user_errors

app = typer.Typer()

@app.command()
@user_errors
def stopped() -> None:
    exec("raise KeyboardInterrupt")  # Ctrl-C in a dataclass's generated method, say

@app.command()
def other() -> None:
    pass

run_guarded(app, ["stopped"])
"""


def test_a_ctrl_c_through_generated_code_exits_130_under_python_m(tmp_path: Path) -> None:
    """CPython notes a KeyboardInterrupt that leaves an ``exec`` of source text as unhandled,
    even once caught; run with ``-m``, the process then died by SIGINT (exit -2) after saying
    "interrupted" and exiting 130."""
    import subprocess
    import sys

    (tmp_path / "stopped_command.py").write_text(_CAUGHT_IN_GENERATED_CODE)
    got = subprocess.run(
        [sys.executable, "-m", "stopped_command"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert got.returncode == 130, (got.returncode, got.stderr)
    assert got.stderr == "error: interrupted; no partial output was left behind\n"


def test_ctrl_c_after_the_command_ends_it_quietly_with_its_own_exit_code() -> None:
    """A signal once the command has finished cuts the teardown short, and is no error.

    Before, it landed in the interpreter's teardown as a KeyboardInterrupt no handler was left
    to catch: a traceback, or a process dead of SIGINT (hostile finding 17, now and then).
    """
    import subprocess
    import sys

    got = subprocess.run(
        [sys.executable, "-c", _TEARDOWN], capture_output=True, text=True, timeout=60
    )
    assert got.returncode == 0, (got.returncode, got.stderr)
    assert got.stdout == "written\n"
    assert got.stderr == "", got.stderr
