"""Strict reading of the TOML files a user writes: scenarios, VM configs, costs, model files.

Every such file is read the same way and fails the same way: a missing file, a folder, an
unreadable or binary file, invalid TOML (with its line and column), an unknown key (with a
"did you mean" and the known keys), a value of the wrong type or out of range. Each failure is
one line naming the file, where in it (a dotted key such as ``mix.read``, or an entry of an
array of tables such as ``[[vm]] #2``), what is wrong and how to fix it, raised as the
caller's :class:`~replay.errors.ReplayError` subclass (``ScenarioError``, ``VmConfigError``,
``ConfigError``) so that the CLI prints it and exits 1.

Whole numbers are bounded by default to what fits in 64 bits (the TOML spec's integers; the
numbers feed numpy arithmetic), and numbers to finite values; callers narrow the ranges
further where their arithmetic needs it.

Examples
--------
>>> from pathlib import Path
>>> from tempfile import TemporaryDirectory
>>> from replay.errors import ReplayError
>>> with TemporaryDirectory() as tmp:
...     path = Path(tmp, "costs.toml")
...     _ = path.write_text("fault_base_ns = 5000")
...     costs = read_toml(path, "costs file", ReplayError)
>>> costs.check_keys({"fault_base_ns", "zap_flush_ns"})
>>> costs.integer("fault_base_ns", 2000, lo=0, hi=10**9)
5000
>>> costs.integer("zap_flush_ns", 10_000, lo=0, hi=10**9)
10000
>>> try:
...     costs.integer("fault_base_ns", lo=0, hi=100)
... except ReplayError as exc:
...     print(str(exc).split(": ", 1)[1])
fault_base_ns = 5000 is out of range; it must be 0..100
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence
    from pathlib import Path

    from replay.errors import ReplayError
    from replay.trace.schema import Memslot

INT64_MAX = (1 << 63) - 1
"""The largest whole number a TOML file may give (TOML integers are 64-bit)."""
_MISSING: Any = object()
"""Default of a key that must be given."""


@dataclass(frozen=True)
class TomlFile:
    """Which file a table came from, what kind of file it is, and the error it raises."""

    path: Path
    what: str
    """The kind of file, as messages name it: ``scenario``, ``vm config``, ``costs file``."""
    error: type[ReplayError]

    def fail(self, where: str, problem: str) -> ReplayError:
        """The error to raise: ``{what} {path}: {where}: {problem}``."""
        head = f"{self.what} {self.path}"
        return self.error(f"{head}: {where}: {problem}" if where else f"{head}: {problem}")


def read_toml(path: Path, what: str, error: type[ReplayError]) -> TomlTable:
    """Read a TOML file; its top-level table.

    Parameters
    ----------
    path
        The file.
    what
        The kind of file, for messages (``"scenario"``).
    error
        The :class:`~replay.errors.ReplayError` subclass every failure raises.

    Raises
    ------
    ReplayError
        ``error``: the file is missing, a folder, unreadable, binary, not UTF-8 or not TOML.
    """
    file = TomlFile(path, what, error)
    name = f"{what} {path}"
    if path.is_dir():
        raise error(f"{name} is a folder; give the path of a .toml file")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{name} does not exist; check the path") from None
    except PermissionError:
        raise error(f"{name} cannot be read (permission denied); check its permissions") from None
    except OSError as exc:
        raise error(f"{name} cannot be read ({exc.strerror or exc}); check the path") from None
    if b"\0" in data:
        raise error(f"{name} is a binary file, not TOML text; give the .toml file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(
            f"{name} is not UTF-8 text (byte {data[exc.start]:#04x} at offset {exc.start}); "
            "save it as UTF-8"
        ) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise file.fail("", f"not valid TOML: {_syntax_error(exc)}; fix the syntax") from None
    return TomlTable(doc, file)


_POSITION = re.compile(
    r"^(?P<msg>.*?) \((?:at line (?P<line>\d+), column (?P<col>\d+)|at end of document)\)$"
)


def _syntax_error(exc: tomllib.TOMLDecodeError) -> str:
    """The parser's message with its position said plainly (``at line 3, column 7``)."""
    m = _POSITION.match(str(exc))
    if m is None:
        return str(exc)
    if m.group("line") is None:
        return f"{m.group('msg')} at the end of the file"
    return f"{m.group('msg')} at line {m.group('line')}, column {m.group('col')}"


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


class TomlTable:
    """One table of a TOML file, read key by key; every failure names the file and the key.

    Parameters
    ----------
    data
        The table's keys and values, as ``tomllib`` gives them.
    file
        The file it came from.
    where
        The entry of an array of tables it is or lies in (``[[vm]] #1 (web)``); empty for the
        top level.
    prefix
        Its dotted path from ``where`` (``mix.``), put before its keys in messages.
    """

    def __init__(
        self, data: dict[str, Any], file: TomlFile, where: str = "", prefix: str = ""
    ) -> None:
        self.data = data
        self.file = file
        self.where = where
        self.prefix = prefix

    def at(self, where: str) -> TomlTable:
        """The same table, named ``where`` in messages (once its name is known)."""
        return TomlTable(self.data, self.file, where, self.prefix)

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def name(self, key: str) -> str:
        """A key as messages name it (its dotted path)."""
        return f"{self.prefix}{key}"

    def fail(self, problem: str) -> ReplayError:
        """The error to raise for a problem in this table."""
        return self.file.fail(self.where, problem)

    def raw(self, key: str, default: Any = None) -> Any:
        """A value as TOML gave it, unchecked (for values of several possible shapes)."""
        return self.data.get(key, default)

    def check_keys(self, allowed: Collection[str], required: Collection[str] = ()) -> None:
        """Refuse unknown keys (with a "did you mean") and missing required ones."""
        for key in self.data:
            if key not in allowed:
                import difflib  # only for a message

                known = sorted(allowed)
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"; did you mean {self.name(close[0])!r}?" if close else ""
                names = ", ".join(self.name(k) for k in known)
                raise self.fail(f"unknown key {self.name(key)!r}{hint} (known: {names})")
        for key in sorted(required):
            if key not in self.data:
                raise self.fail(f"required key {self.name(key)!r} is missing")

    def _get(self, key: str, default: Any) -> Any:
        value = self.data.get(key, default)
        if value is _MISSING:
            raise self.fail(f"required key {self.name(key)!r} is missing")
        return value

    # -- scalars ---------------------------------------------------------------------------
    def integer(
        self, key: str, default: Any = _MISSING, *, lo: int = 0, hi: int = INT64_MAX
    ) -> int:
        """A whole number within [lo, hi]."""
        return self._integer(self._get(key, default), self.name(key), lo, hi)

    def _integer(self, value: Any, name: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(f"{name} must be a whole number, not {value!r}")
        if value < lo or value > hi:
            if hi == INT64_MAX:
                rng = f">= {lo}" if value < lo else "below 2**63"
            else:
                rng = f"{lo}..{hi}"
            raise self.fail(f"{name} = {value} is out of range; it must be {rng}")
        return value

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        lo: float = 0.0,
        hi: float | None = None,
        strict_lo: bool = False,
        finite: bool = True,
    ) -> float:
        """A number (whole or not) within [lo, hi], lo excluded with ``strict_lo``."""
        return self._number(self._get(key, default), self.name(key), lo, hi, strict_lo, finite)

    def _number(
        self, value: Any, name: str, lo: float, hi: float | None, strict_lo: bool, finite: bool
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(f"{name} must be a number, not {value!r}")
        x = float(value)
        bound = f"> {lo:g}" if strict_lo else f">= {lo:g}"
        rng = bound + (f" and <= {hi:g}" if hi is not None else "")
        if finite and not math.isfinite(x):
            raise self.fail(f"{name} = {value!r} is not a finite number; it must be {rng}")
        if x < lo or (strict_lo and x == lo) or (hi is not None and x > hi):
            raise self.fail(f"{name} = {value!r} is out of range; it must be {rng}")
        return x

    def size(
        self, key: str, default: Any = _MISSING, *, positive: bool = True, hi: int = INT64_MAX
    ) -> int:
        """A byte count: an integer or a string such as "3GiB", "512M", "4k", "0x1000"."""
        value = self._get(key, default)
        name = self.name(key)
        example = f'{name} must be a size such as 4096 or "2GiB", not {value!r}'
        if isinstance(value, bool):
            raise self.fail(example)
        if isinstance(value, int):
            n = value
        elif isinstance(value, str):
            n = self._size_text(value, name)
        else:
            raise self.fail(example)
        if n < 0 or (positive and n == 0):
            raise self.fail(f"{name} = {value!r} must be {'positive' if positive else '>= 0'}")
        if n > hi:
            limit = "2**63" if hi == INT64_MAX else f"{hi + 1}"
            raise self.fail(f"{name} = {value!r} is out of range; it must be below {limit}")
        return n

    def _size_text(self, value: str, name: str) -> int:
        text = value.strip()
        if text.lower().startswith("0x"):
            try:
                return int(text, 16)
            except ValueError:
                raise self.fail(f"{name} = {value!r} is not a size") from None
        m = _SIZE_RE.match(text)
        if m is None or text.startswith("-"):
            raise self.fail(f'{name} = {value!r} is not a size; write e.g. 4096, "2GiB", "512M"')
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        """``true`` or ``false``."""
        value = self._get(key, default)
        if not isinstance(value, bool):
            raise self.fail(f"{self.name(key)} must be true or false")
        return value

    def text(self, key: str, default: Any = _MISSING, *, nonempty: bool = False) -> str:
        """A string (not empty with ``nonempty``)."""
        value = self._get(key, default)
        if not isinstance(value, str) or (nonempty and not value):
            kind = "a non-empty string" if nonempty else "a string"
            raise self.fail(f"{self.name(key)} must be {kind}")
        return value

    def choice(self, key: str, choices: Sequence[str], default: Any = _MISSING) -> str:
        """One of ``choices``."""
        value = self._get(key, default)
        if not isinstance(value, str) or value not in choices:
            raise self.fail(f"{self.name(key)} {value!r} must be one of {', '.join(choices)}")
        return value

    # -- lists and tables ------------------------------------------------------------------
    def _list(self, key: str, default: Any, nonempty: bool, of: str) -> list[Any]:
        value = self._get(key, default)
        if not isinstance(value, list) or (nonempty and not value):
            kind = "a non-empty list" if nonempty else "a list"
            raise self.fail(f"{self.name(key)} must be {kind} of {of}, not {value!r}")
        return value

    def integers(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        lo: int = 0,
        hi: int = INT64_MAX,
        nonempty: bool = False,
    ) -> tuple[int, ...]:
        """A list of whole numbers, each within [lo, hi]."""
        items = self._list(key, default, nonempty, "whole numbers")
        return tuple(self._integer(v, self.name(key), lo, hi) for v in items)

    def numbers(
        self,
        key: str,
        default: Any = _MISSING,
        *,
        lo: float = 0.0,
        hi: float | None = None,
        nonempty: bool = False,
    ) -> tuple[float, ...]:
        """A list of finite numbers, each within [lo, hi]."""
        items = self._list(key, default, nonempty, "numbers")
        return tuple(self._number(v, self.name(key), lo, hi, False, True) for v in items)

    def child(self, value: Any, where: str) -> TomlTable:
        """``value`` (an entry of an array of tables) as a table named ``where``."""
        if not isinstance(value, dict):
            raise self.file.fail(where, "must be a table")
        return TomlTable(value, self.file, where)

    def table(self, key: str, default: Any = _MISSING) -> TomlTable:
        """A sub-table (``[a.b]`` or ``b = { ... }``); its keys are named ``key.name``."""
        value = self._get(key, default)
        if not isinstance(value, dict):
            raise self.fail(f"{self.name(key)} must be a table, not {value!r}")
        return TomlTable(value, self.file, self.where, f"{self.name(key)}.")

    def tables(
        self, key: str, default: Any = _MISSING, *, nonempty: bool = True
    ) -> list[TomlTable]:
        """An array of tables; top-level entries are named ``[[key]] #1``, nested ``key[0]``."""
        value = self._get(key, default)
        top = not self.where and not self.prefix
        if not isinstance(value, list) or (nonempty and not value):
            if top and nonempty:
                raise self.file.fail(f"[[{key}]]", f"give at least one [[{key}]] table")
            kind = "a non-empty array" if nonempty else "an array"
            raise self.fail(f"{self.name(key)} must be {kind} of tables")
        if top:
            return [self.child(v, f"[[{key}]] #{i + 1}") for i, v in enumerate(value)]
        at = f"{self.where} {self.name(key)}" if self.where else self.name(key)
        return [self.child(v, f"{at}[{i}]") for i, v in enumerate(value)]


MEMSLOT_KEYS = frozenset({"gpa_start", "size", "backing", "dirty_log"})


def read_memslot(table: TomlTable, extra_keys: Collection[str] = ()) -> Memslot:
    """A ``{gpa_start, size, backing, dirty_log}`` table, checked like a trace's memslot.

    Scenarios and VM configs write memslots the same way; a VM config adds ``hva_start``
    (``extra_keys``), which the caller reads.
    """
    # Imported here: costs and model files need no trace schema.
    from replay.errors import TraceSchemaError
    from replay.trace.schema import BACKINGS, Memslot, check_memslot

    table.check_keys(MEMSLOT_KEYS | set(extra_keys), {"gpa_start", "size"})
    backing = table.choice("backing", BACKINGS, "4k")
    dirty = table.boolean("dirty_log", False)
    slot = Memslot(table.size("gpa_start", positive=False), table.size("size"), backing, dirty)
    try:
        check_memslot(slot, table.where)
    except TraceSchemaError as exc:
        raise table.file.fail("", str(exc)) from None
    return slot
