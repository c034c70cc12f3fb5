"""Scenario variables: a ``[variables]`` table of numbers, used in values as ``${expression}``.

A scenario that reproduces an experiment with options (a selftest's ``-v``, ``-b``, ``-i``,
``-d``) declares them once with their defaults, uses them wherever a value depends on them, and
``replay synth SCENARIO --set vcpus=4`` changes one without editing the file.

The language is deliberately small, so that a scenario stays data and reading one runs no code:

- a variable is a number; a size string such as ``"1GiB"`` is read as its byte count; a
  variable may be an expression over the variables declared above it;
- ``"${expr}"`` as a whole string becomes the expression's value, a number (an integer when the
  arithmetic stayed whole); ``${expr}`` inside a longer string is replaced by the value's text
  (``"${n}MiB"``), and the result is then read as the key expects it;
- an expression is numbers, variable names, ``+ - * / // % **`` and parentheses. ``/`` always
  gives a float; ``//`` and ``%`` on integers stay integers. Nothing else parses: no calls, no
  attributes, no comparisons.

Substitution runs over the parsed TOML document before the scenario is read, so every value
then passes the same checks as a literal one, and its errors name the key and the expression.
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from replay.errors import ReplayError

if TYPE_CHECKING:
    from replay._toml import TomlTable

Fail = Callable[[str, str], ReplayError]
"""Makes the error to raise from where in the file and what is wrong."""
Size = Callable[[str, str, str], int]
"""Reads a size string (``"1GiB"``): where in the file, the key as messages name it, the text."""

_REF = re.compile(r"\$\{([^}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_EXPRESSION = 200
"""Characters an expression may have: enough for any formula, too few to exhaust the parser."""
MAX_MAGNITUDE = 1 << 64
"""Whole results beyond 64 bits are refused (no scenario value is that large)."""

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}


class _Refused(Exception):
    """An expression the language does not accept; its message says why."""


def apply_variables(root: TomlTable, overrides: Mapping[str, str]) -> TomlTable:
    """The document ``root`` with its ``[variables]`` evaluated into its values.

    ``overrides`` are ``--set`` values. Errors are ``root``'s file's, like every other error of
    the document's reading.
    """
    from replay._toml import TomlTable

    file = root.file

    def size(where: str, key: str, text: str) -> int:
        # The key becomes the table's prefix, so the message reads "[variables]: mem = ..."
        # or "command line: --set mem = ...", as the reader says it for any other key.
        table = TomlTable({"": text}, file, where, key)
        return table.size("", positive=False)

    values = read_variables(root.raw("variables"), overrides, file.fail, size)
    return TomlTable(substitute(root.data, values, file.fail), file)


def read_variables(
    table: Any, overrides: Mapping[str, str], fail: Fail, size: Size
) -> dict[str, int | float]:
    """The variables' values: the ``[variables]`` table, in file order, with ``--set`` applied.

    A value is a number, a size string, or an expression over the variables above it (so that
    a scenario can name a derived quantity once: ``pages = "${mem_per_vcpu // 4096}"``).
    ``--set name=text`` replaces a variable's value before it is evaluated, so the variables
    below it follow.

    Parameters
    ----------
    table
        The ``[variables]`` table as TOML gave it (``None`` when the file has none).
    overrides
        ``name -> text`` from the command line; each must name a declared variable.
    fail, size
        The scenario reader's error maker and size reader, so messages look like the rest.
    """
    if table is None:
        table = {}
    if not isinstance(table, dict):
        raise fail("[variables]", "must be a table of name = number")
    for name in overrides:
        if name not in table:
            known = ", ".join(table) or "none"
            raise fail(
                "command line",
                f"--set {name}: the scenario has no variable {name!r} (it has: {known})",
            )
    values: dict[str, int | float] = {}
    for name, raw in table.items():
        if not _NAME.match(name):
            raise fail("[variables]", f"{name!r} is not a variable name; use letters, digits, _")
        if name in overrides:
            text = _parse_number(overrides[name])
            values[name] = _value(text, ("command line", f"--set {name}"), values, fail, size)
        else:
            values[name] = _value(raw, ("[variables]", name), values, fail, size)
    return values


def _parse_number(text: str) -> int | float | str:
    """``--set`` text as TOML would read it: an integer, a float, else the string itself."""
    clean = text.strip().replace("_", "")
    for parse in (int, float):
        try:
            value: int | float = parse(clean)
        except ValueError:
            continue
        return value
    return text


def _value(
    value: Any, at: tuple[str, str], above: Mapping[str, int | float], fail: Fail, size: Size
) -> int | float:
    """One variable's value; ``at`` is (table, key) as messages name them."""
    where, key = at
    if isinstance(value, str) and "${" in value:
        value = _expand(value, f"{where} {key}", above, fail)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise fail(
            where, f'{key} must be a number, a size such as "1GiB" or "${{...}}", not {value!r}'
        )
    if isinstance(value, str):
        return size(where, key, value)
    if isinstance(value, float) and not math.isfinite(value):
        raise fail(where, f"{key} = {value!r} is not a finite number")
    return value


def substitute(
    doc: dict[str, Any], values: Mapping[str, int | float], fail: Fail
) -> dict[str, Any]:
    """A copy of ``doc`` with every ``${expression}`` in its string values evaluated.

    The ``[variables]`` table itself is dropped: it has done its work. Errors name the place as
    the scenario reader does: ``[[vm]] #1 memslots[0].size``.

    Examples
    --------
    >>> from replay.errors import ScenarioError
    >>> fail = lambda where, msg: ScenarioError(f"{where}: {msg}")
    >>> substitute({"a": "${n * 2}", "b": "${n}GiB", "c": ["x"]}, {"n": 3}, fail)
    {'a': 6, 'b': '3GiB', 'c': ['x']}
    """
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "variables":
            continue
        if isinstance(value, dict):
            out[key] = _walk(value, f"[{key}]", values, fail, head=True)
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            out[key] = [
                _walk(v, f"[[{key}]] #{i + 1}", values, fail, head=True)
                for i, v in enumerate(value)
            ]
        else:
            out[key] = _walk(value, key, values, fail)
    return out


def _walk(
    value: Any, where: str, values: Mapping[str, int | float], fail: Fail, *, head: bool = False
) -> Any:
    if isinstance(value, str):
        return _expand(value, where, values, fail) if "${" in value else value
    if isinstance(value, dict):
        # A table header ("[[vm]] #1") is followed by a space, a key path by a dot.
        sep = " " if head else "."
        return {k: _walk(v, f"{where}{sep}{k}", values, fail) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, f"{where}[{i}]", values, fail) for i, v in enumerate(value)]
    return value


def _expand(text: str, where: str, values: Mapping[str, int | float], fail: Fail) -> Any:
    whole = _REF.fullmatch(text)
    if whole is not None:
        return _evaluate(whole.group(1), where, values, fail)

    def one(m: re.Match[str]) -> str:
        return _text(_evaluate(m.group(1), where, values, fail))

    out = _REF.sub(one, text)
    if "${" in out:
        raise fail(where, f"{text!r} has a ${{ without its closing }}")
    return out


def _text(value: int | float) -> str:
    """A value as it reads inside a string: whole floats without their ``.0``."""
    if isinstance(value, float) and value.is_integer() and abs(value) < MAX_MAGNITUDE:
        return str(int(value))
    return repr(value)


def _evaluate(expr: str, where: str, values: Mapping[str, int | float], fail: Fail) -> int | float:
    """The value of one expression; every refusal is the reader's error naming the expression."""
    shown = f"${{{expr}}}"
    if len(expr) > MAX_EXPRESSION:
        raise fail(where, f"{shown[:40]}... is longer than {MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        raise fail(
            where, f"{shown} is not an expression; use numbers, names, + - * / // % ** ( )"
        ) from None
    try:
        result = _node(tree.body, values)
    except _Refused as exc:
        raise fail(where, f"{shown}: {exc}") from None
    except ZeroDivisionError:
        raise fail(where, f"{shown} divides by zero") from None
    except (OverflowError, RecursionError, MemoryError):
        raise fail(where, f"{shown} is too large") from None
    if isinstance(result, float) and not math.isfinite(result):
        raise fail(where, f"{shown} is not a finite number")
    if abs(result) > MAX_MAGNITUDE:
        raise fail(where, f"{shown} = {result:.3g} is beyond 2**64")
    return result


def _node(node: ast.expr, values: Mapping[str, int | float]) -> int | float:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, int | float):
            raise _Refused(f"{node.value!r} is not a number")
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in values:
            known = ", ".join(sorted(values)) or "none; declare them in [variables]"
            raise _Refused(f"unknown variable {node.id!r} (known: {known})")
        return values[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        operand = _node(node.operand, values)
        return -operand if isinstance(node.op, ast.USub) else operand
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _node(node.left, values), _node(node.right, values)
        if isinstance(node.op, ast.Pow) and (abs(right) > 64 or abs(left) > MAX_MAGNITUDE):
            # Bounded before computing it: 9 ** 9 ** 9 would run for minutes.
            raise _Refused("a power's exponent must be within -64..64")
        result: int | float = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex):
            raise _Refused("a negative number to a fractional power is not a real number")
        if abs(result) > MAX_MAGNITUDE:
            raise _Refused("a step of it is beyond 2**64")
        return result
    raise _Refused(f"{ast.unparse(node)!r} is not allowed; use numbers, names, + - * / // % ** ( )")
