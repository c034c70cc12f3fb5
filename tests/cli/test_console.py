from __future__ import annotations

import json

import pytest
import typer

from replay.cli.console import emit_json, fail, make_console, note, user_errors
from replay.errors import ReplayError, TraceDataError


def test_user_errors_become_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command() -> None:
        raise TraceDataError("trace t.parquet, row 3: bad\nthing;   fix it")

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 1
    out, err = capsys.readouterr()
    assert err == "error: trace t.parquet, row 3: bad thing; fix it\n"
    assert out == ""


def test_exit_code_travels_with_the_exception(capsys: pytest.CaptureFixture[str]) -> None:
    class Crossed(ReplayError):
        exit_code = 4

    @user_errors
    def command() -> None:
        raise Crossed("threshold crossed")

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 4
    assert capsys.readouterr().err == "error: threshold crossed\n"


def test_a_command_that_succeeds_returns_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command(x: int) -> int:
        return x + 1

    assert command(2) == 3
    assert capsys.readouterr() == ("", "")


def test_bugs_keep_their_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command() -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        command()
    assert capsys.readouterr().err == ""


def test_interrupt_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command() -> None:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 130
    assert capsys.readouterr().err == "error: interrupted; no partial output was left behind\n"


def test_fail_prints_one_line_and_exits_with_its_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(typer.Exit) as info:
        fail("no SCENARIO;\n  give one", 2)
    assert info.value.exit_code == 2
    assert capsys.readouterr() == ("", "error: no SCENARIO; give one\n")
    with pytest.raises(typer.Exit) as info:
        fail("x")
    assert info.value.exit_code == 1


def test_emit_json_prints_one_versioned_document_on_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    emit_json({"command": "inspect", "a": [1, 2]})
    out, err = capsys.readouterr()
    assert json.loads(out) == {"schema_version": 1, "command": "inspect", "a": [1, 2]}
    assert out.endswith("}\n")
    assert err == ""


def test_notes_go_to_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    note("wrote runs/zap")
    assert capsys.readouterr() == ("", "wrote runs/zap\n")


@pytest.mark.parametrize(("stderr", "min_width"), [(False, 120), (True, 150)])
def test_console_off_a_terminal_keeps_wide_lines_whole(
    capsys: pytest.CaptureFixture[str], stderr: bool, min_width: int
) -> None:
    """Pipes and files get the whole table: no folding at rich's default 80 columns."""
    console = make_console(stderr=stderr, min_width=min_width)
    assert not console.is_terminal
    assert console.width >= min_width
    line = "x" * (min_width - 10)  # with " 12345", longer than 80 columns, within min_width
    console.print(f"[bold]{line}[/bold] 12345")
    out, err = capsys.readouterr()
    assert (err if stderr else out) == f"{line} 12345\n"
    assert (out if stderr else err) == ""
