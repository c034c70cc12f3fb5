"""What every command shares: the error contract, JSON on stdout, the console, progress.

This is the only place that turns a :class:`~replay.errors.ReplayError` into an exit: one line
on stderr, exit code 1, no traceback. Bugs keep their traceback.
"""

from __future__ import annotations

import functools
import json
import re
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar

import typer

from replay.errors import ReplayError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

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
        except (KeyboardInterrupt, RuntimeError) as exc:
            interrupted(exc)  # a RuntimeError that wraps no Ctrl-C goes on as a bug
        except OSError as exc:
            # The last net for a full disk a write path did not name itself (its temporary
            # output is removed on the way here, as for any error).
            from replay.atomic import disk_full_reason

            reason = disk_full_reason(exc)
            if reason is None:
                raise
            where = exc.filename if exc.filename is not None else "an output"
            fail(
                f"{where} could not be written ({reason}); nothing was left behind: free some "
                "space or choose another path"
            )

    return wrapper


def interrupted(
    exc: BaseException, left: str = "no partial output was left behind", during: str = ""
) -> NoReturn:
    """End a command stopped by Ctrl-C (exit 130) or SIGTERM (exit 143), saying what it left.

    ``during`` says what the command was doing (``"while writing the report"``), ``left`` what
    the user finds on disk. ``exc`` is the KeyboardInterrupt, or an exception Python wrapped
    one in (:func:`replay.cli._guard.stop_behind`); any other exception is raised again.
    """
    from replay.cli._guard import TERMINATED_EXIT, Terminated, stop_behind

    stop = stop_behind(exc)
    if stop is None:
        raise exc
    if isinstance(stop, Terminated):
        fail(
            " ".join(filter(None, ["terminated (SIGTERM)", during])) + f"; {left}", TERMINATED_EXIT
        )
    fail(" ".join(filter(None, ["interrupted", during])) + f"; {left}", 130)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: message`` as one line on stderr and exit with ``code``."""
    line = visible(" ".join(message.split()))
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def sweep(folder: Path) -> None:
    """Remove what killed commands of this tool left in ``folder``; one ``note:`` line says what.

    Called by every command before it writes into ``folder``
    (:func:`replay.atomic.sweep_leftovers` leaves the temporary outputs of live commands alone).
    """
    from replay.atomic import sweep_leftovers

    say_swept(sweep_leftovers(folder))


def say_swept(removed: list[Path]) -> None:
    """One ``note:`` line naming removed temporary outputs of killed commands, if any."""
    if removed:
        note(
            f"note: removed {', '.join(str(p) for p in removed)} (temporary output of a replay "
            "command that was killed)"
        )


def emit_json(doc: dict[str, Any]) -> None:
    """Print one JSON document, and nothing else, on stdout."""
    out = {"schema_version": JSON_SCHEMA_VERSION, **doc}
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


def note(message: str) -> None:
    """A human message on stderr (kept off stdout so that ``--json`` stays parseable)."""
    sys.stderr.write(visible(message, keep="\n\t") + "\n")


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def visible(text: str, keep: str = "") -> str:
    r"""``text`` with its control characters (but those in ``keep``) written out as ``\x1b``.

    Names come from users and from files (paths, VM names, provenance): an escape sequence in
    one would otherwise reach the terminal and act there (set its title, recolour it, move the
    cursor), and a NUL or a carriage return would hide what the line says.
    """
    return _CONTROL.sub(lambda m: m[0] if m[0] in keep else f"\\x{ord(m[0]):02x}", text)


def shown(name: object) -> str:
    """A name as rich prints it: control characters written out, markup escaped.

    Rich reads ``[...]`` in any string it prints as markup: ``x[red]y`` would print as ``xy``
    in red, and ``a[/]b`` stops the command with a markup error. Every name a command prints
    through a rich console or table passes here.
    """
    from rich.markup import escape

    return escape(visible(str(name)))


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
        task = bar.add_task(shown(description), total=total)  # it names a file or scenario

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update
