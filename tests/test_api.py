from __future__ import annotations

import subprocess
import sys

import pytest

import replay


def test_every_public_name_is_the_object_its_module_defines() -> None:
    """Each name of ``__all__`` resolves, lazily, to the very object of the module that defines
    it (not a copy or a stand-in), which is documented; unknown names are an AttributeError."""
    import importlib
    import inspect

    for name in replay.__all__:
        home = replay._LAZY.get(name, "replay.errors")
        obj = getattr(replay, name)
        assert obj is getattr(importlib.import_module(home), name), name
        assert inspect.isclass(obj) or inspect.isfunction(obj), name
        assert inspect.getdoc(obj), f"{name} has no docstring"
    assert sorted(replay.__all__) == sorted([*replay._LAZY, "ReplayError"])
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = replay.nope


def test_import_is_light() -> None:
    """``import replay`` loads none of the heavy libraries (the CLI's start-up depends on it)."""
    code = "import sys, replay; print(sorted(m for m in ('numpy', 'pyarrow', 'polars', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
