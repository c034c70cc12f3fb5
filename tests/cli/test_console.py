from __future__ import annotations

import json

import pytest
import typer

from replay.cli.console import emit_json, fail, user_errors
from replay.errors import ReplayError, TraceDataError


def test_user_errors_become_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command() -> None:
        raise TraceDataError("trace t.parquet, row 3: bad\nthing;   fix it")

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 1
    err = capsys.readouterr().err
    assert err == "error: trace t.parquet, row 3: bad thing; fix it\n"


def test_exit_code_travels_with_the_exception(capsys: pytest.CaptureFixture[str]) -> None:
    class Crossed(ReplayError):
        exit_code = 4

    @user_errors
    def command() -> None:
        raise Crossed("threshold crossed")

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 4


def test_bugs_keep_their_traceback() -> None:
    @user_errors
    def command() -> None:
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        command()


def test_interrupt_exits_130(capsys: pytest.CaptureFixture[str]) -> None:
    @user_errors
    def command() -> None:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 130
    assert "interrupted" in capsys.readouterr().err


def test_fail_and_emit_json(capsys: pytest.CaptureFixture[str]) -> None:
    emit_json({"a": 1})
    assert json.loads(capsys.readouterr().out) == {"schema_version": 1, "a": 1}
    with pytest.raises(typer.Exit):
        fail("x", 2)
