from __future__ import annotations

import subprocess
import sys

import replay


def test_every_public_name_resolves() -> None:
    for name in replay.__all__:
        assert getattr(replay, name) is not None, name


def test_import_is_light() -> None:
    """``import replay`` loads none of the heavy libraries (the CLI's start-up depends on it)."""
    code = "import sys, replay; print(sorted(m for m in ('numpy', 'pyarrow', 'polars', 'matplotlib') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
