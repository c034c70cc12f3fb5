"""Locate the machine-readable schema files.

``schemas/`` at the top of the source tree is the single definition. A built wheel carries a
copy as ``replay/_schemas/`` (hatch ``force-include``); an editable install or a checkout reads
the top-level folder directly.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any


def schema_dir() -> Path:
    """Return the folder that holds the schema JSON files."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "_schemas", here.parent / "schemas"):
        if (candidate / "trace.v1.json").is_file():
            return candidate
    msg = f"schema files missing (looked in {here / '_schemas'} and {here.parent / 'schemas'})"
    raise RuntimeError(msg)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Load one schema document, e.g. ``load_schema("trace.v1")``."""
    with (schema_dir() / f"{name}.json").open(encoding="utf-8") as fh:
        doc: dict[str, Any] = json.load(fh)
    return doc
