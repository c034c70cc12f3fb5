"""The ``replay`` command's process settings (replay/cli/_process.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _settings_after_import(env: dict[str, str]) -> dict[str, str | None]:
    code = (
        "import json, os, replay.cli; "
        "print(json.dumps({k: os.environ.get(k) for k in "
        "('OPENBLAS_NUM_THREADS', 'MIMALLOC_PURGE_DELAY')}))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout
    got: dict[str, str | None] = json.loads(out)
    return got


def test_the_command_keeps_freed_memory_and_one_blas_thread() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS",)}
    env.pop("MIMALLOC_PURGE_DELAY", None)
    assert _settings_after_import(env) == {
        "OPENBLAS_NUM_THREADS": "1",
        "MIMALLOC_PURGE_DELAY": "-1",
    }


def test_a_users_own_settings_win() -> None:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "4", "MIMALLOC_PURGE_DELAY": "10"}
    assert _settings_after_import(env) == {
        "OPENBLAS_NUM_THREADS": "4",
        "MIMALLOC_PURGE_DELAY": "10",
    }
