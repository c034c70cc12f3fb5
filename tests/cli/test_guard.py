"""The outermost layer of the command: signals, closed pipes, usage errors and the tool's bugs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

from replay.cli._guard import DEBUG_ENV, run_guarded
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


def test_a_closed_pipe_is_not_an_error(tmp_path: Path) -> None:
    """Issue 12 item 17: ``replay run ... | head -1`` exited 1 with no message."""
    cmd = f"{sys.executable} -m replay run {SAMPLE} -o {tmp_path / 'runs'} | head -1"
    proc = subprocess.run(
        ["bash", "-c", f"{cmd}; echo rc=${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout.strip().splitlines()[-1] == "rc=0", proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["cache", "none", "zap"]


def test_sigterm_behaves_like_ctrl_c(tmp_path: Path) -> None:
    """Issue 12 item 13: SIGTERM (timeout, systemd, schedulers) left ``.NAME.PID.partial``."""
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
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err  # 128 + SIGTERM, as a shell reports it
    assert err.startswith("error: terminated (SIGTERM); no partial output was left behind"), err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == []
