"""``summary.json`` checked against the shape ``schemas/run.v1.json`` gives it.

The schema's ``summary.json`` entry has a ``shape``: every key ``replay diff`` and ``replay
report`` read, with the type they read it as (its ``shape_doc`` says the notation). Walking it
once when a run is loaded means that a damaged or hand-edited summary (``totals`` a list, a
VM's block a number, a count that is a string) is one line naming the key, never a
``TypeError`` deep in a table or a plot. The schema file stays the one definition: this module
holds only the walker.
"""

from __future__ import annotations

import math
import re
from typing import Any

from replay.run.schema import RUN_SCHEMA

_SUMMARY = RUN_SCHEMA["files"]["summary.json"]
SHAPE: dict[str, Any] = _SUMMARY["shape"]
SHAPES: dict[str, dict[str, Any]] = _SUMMARY["shapes"]
ENUMS: dict[str, list[str]] = RUN_SCHEMA["enums"]


class ShapeError(ValueError):
    """A value is not of the shape the schema gives it; the message names the key."""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _leaf_ok(kind: str, value: Any) -> bool:
    """Whether ``value`` is of the leaf type ``kind`` (one alternative, no ``|``)."""
    if kind == "null":
        return value is None
    if kind == "count":
        return _is_int(value) and value >= 0
    if kind == "positive":
        return _is_int(value) and value >= 1
    if kind == "int":
        return _is_int(value)
    if kind == "number":
        return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)
    if kind == "string":
        return isinstance(value, str)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "list<string>":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind.startswith("enum:"):
        return isinstance(value, str) and value in ENUMS[kind[5:]]
    raise KeyError(f"run.v1.json: unknown leaf type {kind!r}")  # a schema bug, not the user's


def _describe(kind: str) -> str:
    words = {
        "count": "a whole number >= 0",
        "positive": "a whole number >= 1",
        "int": "a whole number",
        "number": "a finite number",
        "string": "a string",
        "object": "a JSON object",
        "list<string>": "a list of strings",
        "null": "null",
    }
    if kind.startswith("enum:"):
        return "one of " + ", ".join(ENUMS[kind[5:]])
    return " or ".join(words.get(k, k) for k in kind.split("|"))


def _found(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def check(value: Any, shape: Any, where: str) -> None:
    """Raise :class:`ShapeError` naming the first key of ``value`` that breaks ``shape``."""
    if isinstance(shape, str):
        if not any(_leaf_ok(kind, value) for kind in shape.split("|")):
            raise ShapeError(f"{where} must be {_describe(shape)}, not {_found(value)}")
        return
    if not isinstance(value, dict):
        raise ShapeError(f"{where} must be a JSON object, not {_found(value)}")
    if "$each" in shape:
        _check_each(value, shape, where)
    elif "$map" in shape:
        _check_map(value, shape, where)
    else:
        _check_keys(value, shape, where)


def _check_each(value: dict[str, Any], shape: dict[str, Any], where: str) -> None:
    """An object with a key for every value of an enumeration."""
    for name in ENUMS[shape["$each"]]:
        if name not in value:
            raise ShapeError(f"{where} lacks {name}")
        check(value[name], shape["$value"], f"{where}.{name}")


def _check_map(value: dict[str, Any], shape: dict[str, Any], where: str) -> None:
    """An object of any keys (of the ``$keys`` pattern), every value of one shape."""
    pattern = shape.get("$keys")
    for key, item in value.items():
        if pattern is not None and not re.fullmatch(pattern, key):
            raise ShapeError(f"{where} has a key {_found(key)} of the wrong form")
        check(item, shape["$map"], f"{where}.{key}")


def _check_keys(value: dict[str, Any], shape: dict[str, Any], where: str) -> None:
    """An object with the keys listed (``?``: may be absent), and maybe others."""
    keys = dict(SHAPES[shape["$extends"]]) if "$extends" in shape else {}
    keys.update((k, v) for k, v in shape.items() if k != "$extends")
    for key, inner in keys.items():
        name = key.removesuffix("?")
        if name in value:
            check(value[name], inner, f"{where}.{name}" if where else name)
        elif not key.endswith("?"):
            raise ShapeError(f"{where + ' ' if where else ''}lacks the key {name}")


def check_summary(doc: Any) -> None:
    """Check a whole ``summary.json`` document against the schema's shape.

    Raises
    ------
    ShapeError
        The first key that is missing or of the wrong type, by its dotted path.

    Examples
    --------
    >>> check_summary({"schema_version": 1, "policy": "zap", "totals": []})
    Traceback (most recent call last):
    ...
    replay.run.shape.ShapeError: lacks the key engine
    """
    check(doc, SHAPE, "")
