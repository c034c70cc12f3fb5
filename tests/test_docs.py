"""The public API explains itself, and its examples run.

The examples are collected from replay/ by ``--doctest-modules`` (pyproject.toml); conftest.py at
the top runs each in a fresh folder. These tests keep them from being skipped or dropped.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import replay

ROOT = Path(__file__).resolve().parents[1]

# Public names whose modules another branch of issue 13 moves (replay/run/); whoever merges it
# writes their numpydoc sections and empties this set. The test fails as soon as the set no
# longer matches what lacks them, in either direction.
PENDING: set[str] = set()


def _sections(doc: str) -> set[str]:
    """The numpydoc section titles of a docstring (a title underlined with dashes)."""
    lines = inspect.cleandoc(doc).splitlines()
    return {
        lines[i].strip()
        for i in range(len(lines) - 1)
        if lines[i].strip() and re.fullmatch(r"-{3,}", lines[i + 1].strip())
    }


def _needed(obj: object) -> set[str]:
    if isinstance(obj, type):
        return {"Parameters", "Examples"}
    returns = "Yields" if inspect.isgeneratorfunction(obj) else "Returns"
    return {"Parameters", returns, "Raises", "Examples"}


def test_every_public_name_has_numpydoc_sections_and_an_example() -> None:
    lacking = {}
    for name in replay.__all__:
        obj = getattr(replay, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert obj.__doc__, f"{name} has no docstring"
            continue
        missing = _needed(obj) - _sections(obj.__doc__ or "")
        if missing:
            lacking[name] = sorted(missing)
    assert set(lacking) == PENDING, lacking


def test_no_example_is_skipped() -> None:
    skipped = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in sorted((ROOT / "replay").rglob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "doctest: +SKIP" in line
    ]
    assert not skipped, "examples that do not run: " + ", ".join(skipped)


def test_the_package_docstring_has_a_worked_example() -> None:
    assert ">>> " in (replay.__doc__ or "")
