"""Hypothesis strategies for hostile inputs: JSON and TOML values, footer and document edits.

Values lean to the edges where arithmetic breaks: int64 and uint64 limits, 2**52 (the widest
guest address), NaN and infinities, wrong types, and nesting.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

EXTREME_INTS = (
    0,
    -1,
    1,
    7,
    4095,
    4096,
    (1 << 16) - 1,
    1 << 16,
    (1 << 31) - 1,
    1 << 32,
    1 << 52,
    (1 << 63) - 1,
    1 << 63,
    (1 << 64) - 1,
    1 << 64,
    -(1 << 63),
    10**30,
)
EXTREME_FLOATS = (0.5, -0.0, 1e-300, 1e308, -1e308, math.nan, math.inf, -math.inf, 1.7e18)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EXTREME_INTS),
    st.sampled_from(EXTREME_FLOATS),
    st.integers(min_value=-(1 << 70), max_value=1 << 70),
    st.text(max_size=12),
    st.sampled_from(
        ["", "4k", "2m", "1g", "tdp_mmu", "shadow_direct", "all-accesses", "[/]", "\x1b[31m"]
    ),
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


def nested(depth: int) -> Any:
    """A list nested ``depth`` deep (JSON text: ``[[[...]]]``)."""
    return json.loads("[" * depth + "]" * depth) if depth < 900 else _Deep(depth)


class _Deep:
    """A marker for nesting too deep to build as Python objects: written as text."""

    def __init__(self, depth: int) -> None:
        self.depth = depth

    def text(self) -> str:
        return "[" * self.depth + "]" * self.depth


def paths_of(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every key path of a JSON document (dict keys and list indices), parents first."""
    out: list[tuple[Any, ...]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            out.append((*prefix, key))
            out.extend(paths_of(value, (*prefix, key)))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out.append((*prefix, i))
            out.extend(paths_of(value, (*prefix, i)))
    return out


@st.composite
def document_edits(draw: st.DrawFn, doc: Any) -> tuple[str, tuple[Any, ...], Any]:
    """One edit of ``doc``: (action, path, value); action is set, delete, add or nest."""
    path = draw(st.sampled_from(paths_of(doc)))
    action = draw(st.sampled_from(["set", "set", "set", "delete", "add", "nest"]))
    if action == "set":
        return action, path, draw(json_values)
    if action == "add":
        return action, path, (draw(st.text(min_size=1, max_size=8)), draw(json_values))
    if action == "nest":
        return action, path, draw(st.sampled_from([2, 60, 2_000, 200_000]))
    return action, path, None


def apply_edit(doc: Any, edit: tuple[str, tuple[Any, ...], Any]) -> str:
    """The JSON text of ``doc`` with ``edit`` made (``doc`` itself is not changed)."""
    doc = json.loads(json.dumps(doc))
    action, path, value = edit
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    deep = None
    if action == "set":
        parent[key] = value
    elif action == "delete":
        del parent[key]
    elif action == "add":
        target = parent[key]
        name, extra = value
        if isinstance(target, dict):
            target[name] = extra
        elif isinstance(target, list):
            target.append(extra)
        else:
            parent[key] = [target, extra]
    else:  # nest: the value wrapped in lists, or replaced by a deep nest written as text
        made = nested(value)
        if isinstance(made, _Deep):
            deep = made
            parent[key] = "@@DEEP@@"
        else:
            parent[key] = made
    text = json.dumps(doc)
    if deep is not None:
        text = text.replace('"@@DEEP@@"', deep.text())
    return text


def toml_value(value: Any) -> str:
    """A value written as TOML (what a user could type), including nan and inf."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + " }"
        )
    return json.dumps(str(value))


toml_values = st.recursive(
    st.one_of(
        st.booleans(),
        st.sampled_from(EXTREME_INTS),
        st.sampled_from(EXTREME_FLOATS),
        st.integers(min_value=-(1 << 63), max_value=(1 << 63) - 1),
        st.text(max_size=10),
        st.sampled_from(["4k", "2m", "1GiB", "0x100000000", "-1GiB", "1e3", "all", "zipf"]),
    ),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"[a-z_]{1,8}", fullmatch=True), inner, max_size=2)
    ),
    max_leaves=4,
)
"""TOML values. The TOML spec's integers are 64-bit, but Python's reader takes any size, so
values past int64 reach the tool as they are."""
