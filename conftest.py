"""The checkout's own pytest set-up: each example in replay/'s docstrings runs in a fresh folder.

The examples write files (a trace, runs, a report) as a user would in a folder of their own, so
they read as what one types, with no temporary-folder boilerplate. A conftest under tests/
applies only to tests/, so the set-up for the doctests collected from replay/ lives here.
"""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _examples_run_in_a_fresh_folder(request: pytest.FixtureRequest) -> None:
    if isinstance(request.node, pytest.DoctestItem):
        folder = request.getfixturevalue("tmp_path")
        request.getfixturevalue("monkeypatch").chdir(folder)
