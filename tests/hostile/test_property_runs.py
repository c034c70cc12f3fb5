"""Damaged run folders, generated: ``summary.json`` edited field by field, run files cut, flipped,
swapped or removed. ``replay diff`` and ``replay report`` must keep the contract.
"""

from __future__ import annotations

import json
import shutil
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from tests.hostile.runner import Sandbox
from tests.hostile.strategies import apply_edit, document_edits

if TYPE_CHECKING:
    from pathlib import Path

PROPERTY = settings(
    max_examples=6,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # no shrinking: each example is a process
    suppress_health_check=[HealthCheck.too_slow],
)
RUN_FILES = ("faults.parquet", "scans.parquet", "timeline.parquet", "vcpu_cache.parquet")


def _summary_skeleton() -> dict[str, Any]:
    """The shape of a summary.json, for drawing edits (the values come from the real one)."""
    return {
        "schema_version": 1,
        "policy": "cache",
        "engine": "fast",
        "wall_s": 0.1,
        "trace": {"path": "t.parquet", "fingerprint": "sha256:0", "coverage": "all-accesses"},
        "config": {"mmu": {}, "costs": {}, "bucket_ns": 100_000_000},
        "caveats": [],
        "totals": {"faults": 0, "faults_by_attribution": {"none": 0}, "pages_freed": 0},
        "per_vm": {"0": {"faults": 0}},
        "per_vcpu": {"0": {"0": {"faults": 0}}},
    }


def _edit_real(real: dict[str, Any], edit: tuple[str, tuple[Any, ...], Any]) -> str:
    """Apply an edit drawn on the skeleton to the real summary, where its path exists.

    Where it does not (a parent missing, or the key itself for an edit that needs it there: a
    delete, add or nest; ``per_vcpu`` is keyed ``"0/0"``, not ``"0"`` then ``"0"``), the drawn
    value is set at the path's first key instead.
    """
    node: Any = real
    action, path, value = edit
    needed = path if action != "set" else path[:-1]
    for key in needed:
        if (isinstance(node, dict) and key in node) or (
            isinstance(node, list) and isinstance(key, int) and key < len(node)
        ):
            node = node[key]
        else:
            return apply_edit(real, ("set", (path[0],), value))
    return apply_edit(real, edit)


@PROPERTY
@given(edit=document_edits(_summary_skeleton()))
@example(edit=("set", ("totals",), [1, 2]))
def test_summary_edited(
    hostile_base: Path, small_runs: Path, edit: tuple[str, tuple[Any, ...], Any]
) -> None:
    with Sandbox(hostile_base) as box:
        box.copy(small_runs, "runs")
        path = box.path / "runs" / "cache" / "summary.json"
        path.write_text(_edit_real(json.loads(path.read_text()), edit))
        box.run("diff", "runs/zap", "runs/cache", "--json")


def _damage(path: Path, action: str, where: float, other: Path) -> None:
    data = path.read_bytes()
    at = int(where * len(data))
    if action == "cut":
        path.write_bytes(data[:at])
    elif action == "flip":
        path.write_bytes(data[:at] + bytes(64) + data[at + 64 :])
    elif action == "remove":
        path.unlink()
    elif action == "swap" and other != path:
        shutil.copyfile(other, path)
    elif action == "empty":
        path.write_bytes(b"")


@settings(PROPERTY, max_examples=5)
@given(
    name=st.sampled_from(RUN_FILES),
    action=st.sampled_from(["cut", "flip", "remove", "swap", "empty"]),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    swap_with=st.sampled_from([*RUN_FILES, "summary.json"]),
)
def test_run_file_damaged(
    hostile_base: Path, small_runs: Path, name: str, action: str, where: float, swap_with: str
) -> None:
    with Sandbox(hostile_base) as box:
        box.copy(small_runs, "runs")
        run = box.path / "runs" / "cache"
        _damage(run / name, action, where, run / swap_with)
        # diff reads faults.parquet and summary.json; whatever else is damaged, it keeps the
        # contract (and a damaged faults.parquet is one line, as it is today).
        box.run("diff", "runs/zap", "runs/cache", "--json")


@settings(PROPERTY, max_examples=3)
@given(
    name=st.sampled_from(RUN_FILES),
    action=st.sampled_from(["cut", "flip", "swap"]),
    where=st.floats(min_value=0.1, max_value=0.9),
)
@example(name="vcpu_cache.parquet", action="swap", where=0.5)
def test_run_file_damaged_report(
    hostile_base: Path, small_runs: Path, small_trace: Path, name: str, action: str, where: float
) -> None:
    with Sandbox(hostile_base) as box:
        box.copy(small_runs, "runs")
        run = box.path / "runs" / "zap"
        _damage(run / name, action, where, small_trace)
        box.run(
            "report", "runs/zap", "-o", "r.html", outputs={"r.html": "report", "r-*.png": "file"}
        )
