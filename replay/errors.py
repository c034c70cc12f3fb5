"""The one exception root of the package.

Library code raises a :class:`ReplayError` subclass for every problem a user can fix (bad input,
a missing file, a wrong option value). Only ``replay.cli`` catches them: it prints the message as
one line on stderr and exits with :attr:`ReplayError.exit_code`. Anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations


class ReplayError(Exception):
    """A problem the user can fix; the message says what, where, and how to fix it."""

    exit_code = 1


class InputFileError(ReplayError):
    """An input file is missing, unreadable, or not the kind of file expected."""


class OutputPathError(ReplayError):
    """An output file cannot be written where the user asked."""


class TraceSchemaError(ReplayError):
    """A trace's footer, columns or types do not match the trace schema."""


class TraceVersionError(TraceSchemaError):
    """A trace was written with a schema version this reader does not know."""


class TraceDataError(ReplayError):
    """A row of a trace breaks a rule of the schema (order, references, required fields)."""


class ScenarioError(ReplayError):
    """A scenario file is missing, malformed, or names an unknown key or a bad value."""
