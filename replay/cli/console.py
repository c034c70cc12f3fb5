"""What every command shares: the error contract, JSON on stdout, the console, progress.

This is the only place that turns a :class:`~replay.errors.ReplayError` into an exit: one line
on stderr, exit code 1, no traceback. Bugs keep their traceback.
"""

from __future__ import annotations

import functools
import json
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer

from replay.errors import ReplayError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")

JSON_SCHEMA_VERSION = 1
"""Version of the JSON documents the commands print with ``--json``."""


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap a command: a ReplayError becomes one stderr line and its exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ReplayError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            fail("interrupted; no partial output was left behind", 130)

    return wrapper


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    line = " ".join(message.split())
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def emit_json(doc: dict[str, Any]) -> None:
    """Print one JSON document, and nothing else, on stdout."""
    out = {"schema_version": JSON_SCHEMA_VERSION, **doc}
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


def note(message: str) -> None:
    """A human message on stderr (kept off stdout so that ``--json`` stays parseable)."""
    sys.stderr.write(message + "\n")


def make_console(*, stderr: bool = False, min_width: int = 120) -> Console:
    """The rich console a command prints its tables on (stdout unless ``stderr``).

    Rich does not colour numbers or paths on its own: what is styled, the command styles.
    Output to a pipe or a file is at least ``min_width`` columns wide: with no terminal to
    measure, rich would fold the tables to its default of 80 columns.
    """
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False)
    if not console.is_terminal:
        console.width = max(console.width, min_width)
    return console


@contextmanager
def progress(description: str, total: int) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr, drawn only when stderr is a terminal.

    Yields ``update(done, total)``.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = make_console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
