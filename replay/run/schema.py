"""Run schema v1 in code: the names, version and stamp of a run's files.

A run is a folder ``DIR/<policy>/`` of the files named here (``schemas/run.v1.json`` defines
them). The writer (:mod:`.outputs`), the reader (:mod:`.load`) and ``replay diff`` all take the
names from this module, which loads nothing of the replay itself, so reading a run never
imports the driver or the engines.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from replay._schemas import load_schema

if TYPE_CHECKING:
    from replay.mmu.config import Policy

RUN_SCHEMA = load_schema("run.v1")
RUN_SCHEMA_VERSION: int = int(RUN_SCHEMA["schema_version"])
RUN_KEY: str = str(RUN_SCHEMA["metadata_key"])
"""The footer key every Parquet file of a run carries (see :func:`run_stamp`)."""

FAULTS_FILE = "faults.parquet"
SCANS_FILE = "scans.parquet"
TIMELINE_FILE = "timeline.parquet"
VCPU_CACHE_FILE = "vcpu_cache.parquet"
SUMMARY_FILE = "summary.json"
RUN_FILES: tuple[str, ...] = tuple(RUN_SCHEMA["files"])
"""Every file of a run, as the schema lists them."""

TIMELINE_COLUMNS: tuple[str, ...] = tuple(
    c["name"] for c in RUN_SCHEMA["files"][TIMELINE_FILE]["columns"]
)
"""The columns of ``timeline.parquet``, in order."""

FAULTS_ONLY_CAVEAT = (
    "faults-only trace: accesses that hit were never recorded, so this replay can only remove "
    "faults the kernel took, not add faults the kernel avoided"
)
COSTS_CAVEAT = "est_ns and every stall figure are estimates from the cost model, not measurements"


def run_stamp(policy: Policy, fingerprint: str) -> dict[bytes, bytes]:
    """The :data:`RUN_KEY` footer entry of every Parquet file of a run.

    It names no engine, so that both engines write the same bytes.
    """
    doc = {
        "schema_version": RUN_SCHEMA_VERSION,
        "policy": policy,
        "trace_fingerprint": fingerprint,
    }
    return {RUN_KEY.encode(): json.dumps(doc).encode()}
