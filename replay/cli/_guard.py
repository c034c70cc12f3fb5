"""The outermost layer of the ``replay`` command: signals, closed pipes and the tool's own bugs.

User mistakes never reach here: every command turns a :class:`~replay.errors.ReplayError` into
one line and its exit code. What does reach here is handled so that a user still sees one line:

* SIGTERM (what ``timeout``, systemd and job schedulers send) behaves like Ctrl-C: the command
  unwinds, every temporary output is removed, and it exits 143 (128 + 15);
* a closed standard output (``replay run ... | head -1``) is not an error: the command stops
  writing and exits 0;
* any other exception is a bug in kvm-mmu-replay: one line says so and how to report it; the
  traceback is shown with ``--debug`` (first argument) or ``REPLAY_DEBUG=1``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import traceback
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

DEBUG_ENV = "REPLAY_DEBUG"
TERMINATED_EXIT = 128 + signal.SIGTERM


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds like Ctrl-C."""


def _on_sigterm(signum: int, frame: Any) -> None:
    del signum, frame
    # Once is enough: a second SIGTERM during the clean-up must not cut it short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def run_guarded(app: Callable[..., Any], args: list[str]) -> None:
    """Run the typer ``app`` on ``args`` with the handling this module describes."""
    debug = bool(os.environ.get(DEBUG_ENV))
    if args[:1] == ["--debug"]:
        debug, args = True, args[1:]
    import typer

    click = _click()
    signal.signal(signal.SIGTERM, _on_sigterm)
    sys.stdout = _PipeSafe(sys.stdout)
    try:
        # Not standalone: click prints usage errors in a box of several lines; they are one
        # line here. (It returns the exit code of a command that exited early.)
        code = app(args=args, prog_name="replay", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as usage:
        usage.show()  # the help, as click prints it when no argument is given
        code = usage.exit_code
    except click.exceptions.ClickException as usage:
        sys.stderr.write(f"error: {_usage_line(usage)}\n")
        code = usage.exit_code
    except typer.Abort as abort:
        # click turns Ctrl-C (and so SIGTERM) outside a command into Abort; its cause says which.
        code = _stopped(abort.__cause__ or abort.__context__)
    except KeyboardInterrupt as interrupt:  # landed while typer built the command, before click
        code = _stopped(interrupt)
    except Exception as exc:  # the last line of defence: a bug, said in one line
        stop = stop_behind(exc)  # or a Ctrl-C that Python wrapped: not a bug
        code = _bug(exc, debug) if stop is None else _stopped(stop)
    code = code if isinstance(code, int) else 0
    _finished(code)
    sys.exit(code)


def stop_behind(exc: BaseException) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM (:class:`Terminated`) that ``exc`` is or wraps; None for the rest.

    Python 3.11 turns whatever is raised while a class is created (``__set_name__``: a
    ``functools.cached_property``, an enum's members) into a RuntimeError caused by it, so a
    Ctrl-C that lands in a class of a module a command imports lazily arrives as a
    RuntimeError. It was reported as a bug (exit 70); it is the user's interruption.
    """
    if isinstance(exc, KeyboardInterrupt):
        return exc
    cause = exc.__cause__
    if (
        isinstance(exc, RuntimeError)
        and isinstance(cause, KeyboardInterrupt)
        and "__set_name__" in str(exc)
    ):
        return cause
    return None


def _bug(exc: Exception, debug: bool) -> int:
    """Say that ``exc`` is a bug in kvm-mmu-replay, in one line; its exit code (EX_SOFTWARE)."""
    if debug:
        traceback.print_exc()
    name = type(exc).__name__
    message = " ".join(str(exc).split())[:300]
    sys.stderr.write(
        f"error: internal error in kvm-mmu-replay ({name}: {message}); this is a bug, not "
        f"your mistake: please report it with the command line and the traceback that "
        f"{DEBUG_ENV}=1 (or replay --debug ...) prints\n"
    )
    return 70


def _stopped(stop: BaseException | None) -> int:
    """Say that the command was stopped outside its own handling; its exit code."""
    if isinstance(stop, Terminated):
        sys.stderr.write("error: terminated (SIGTERM); no partial output was left behind\n")
        return TERMINATED_EXIT
    sys.stderr.write("error: interrupted; no partial output was left behind\n")
    return 130


def _finished(code: int) -> None:
    """The command is over: a Ctrl-C or SIGTERM from now on ends the process with ``code``.

    What is left is the interpreter's teardown (freeing the replay's arrays, joining idle
    threads). A signal there used to escape as a KeyboardInterrupt that no handler was left to
    catch, and the process died of SIGINT (exit -2) after it had written everything and said so.
    """

    def now(signum: int, frame: Any) -> None:
        del signum, frame
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # closed or gone: nothing to say
                stream.flush()
        os._exit(code)

    signal.signal(signal.SIGINT, now)
    signal.signal(signal.SIGTERM, now)
    _finished_code.append(code)


_finished_code: list[int] = []
"""The finished command's exit code, once :func:`_finished` has run."""


def _ignore_signals_once_finished() -> None:
    """An exit hook: after the command finished, Ctrl-C and SIGTERM are ignored from here on.

    Past the exit hooks the interpreter puts back the default action of every signal that had
    a Python handler, then frees its modules (the replay's arrays, tens of milliseconds): a
    signal there killed a command that had written everything and said so (exit -2). No Python
    handler could run there anyway; ignoring it lets the process end with its own code.
    """
    # The price: a teardown that hung (none is known; it frees memory) would need SIGKILL.
    if _finished_code:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        _forget_handled_interrupt()


def _forget_handled_interrupt() -> None:
    """Clear CPython's note of an unhandled Ctrl-C: the finished command handled it.

    CPython notes a KeyboardInterrupt that leaves any ``exec`` or ``eval`` of source text (the
    methods dataclasses and named tuples generate are made so, as modules are imported) as
    unhandled, even when the command catches it later. Run as ``python -m replay``, the
    interpreter then killed itself by SIGINT at the very end (exit -2) after the command had
    said "interrupted" and exited 130 (the hostile suite's item 13, one run in twenty). The
    note is private (a variable of its own in 3.11, part of the runtime's state from 3.12), but
    every evaluation of source text starts by clearing it: one that does nothing clears it
    here, on 3.11, 3.12 and 3.13 alike.
    """
    exec("pass")  # a constant: its only effect is the clearing


# Registered as this module is imported, before the command runs, so that it runs after every
# exit hook registered later (they run last registered first): after the command's own hooks
# (its read-ahead worker, its child processes), with only the interpreter's end after it.
atexit.register(_ignore_signals_once_finished)


def _click() -> Any:
    """The click typer uses: its own copy from version 0.16 on (before, it depends on click).

    Its copy first: click itself may be installed beside it (Dask's ``distributed`` depends on
    it), and typer raises the exceptions of its copy, not of that one.
    """
    try:
        from typer import _click as click
    except ImportError:
        import click  # type: ignore[import-not-found,no-redef,unused-ignore]
    return click


class _PipeSafe:
    """Standard output that treats a reader gone away as the end of output, not an error.

    ``replay run ... | head -1``: once ``head`` has its line, every later write would raise
    BrokenPipeError (and click would exit 1). Writes then go to /dev/null and the command ends
    as it would have.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        try:
            return int(self._inner.write(text))
        except BrokenPipeError:
            _quiet_closed_stdout()
            return len(text)

    def flush(self) -> None:
        try:
            self._inner.flush()
        except BrokenPipeError:
            _quiet_closed_stdout()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _usage_line(usage: Any) -> str:
    """A usage error as one line, with where to read the command's options."""
    message = " ".join(usage.format_message().split())
    ctx = getattr(usage, "ctx", None)
    where = f"{ctx.command_path} --help" if ctx is not None else "replay --help"
    return f"{message} (see {where})"


def _quiet_closed_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's own flush at exit does not fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
