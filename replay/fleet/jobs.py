"""Jobs: one trace under one sweep point, keyed by content.

A job's key hashes everything its runs depend on (the trace's fingerprint, the full MMU
configuration and cost model of its sweep point, the policies, the MMU mode override, the
timeline's bucket width and the tool's version), so a finished job is recognised on disk
whatever command, machine or order produced it, and is never done twice.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from replay._version import __version__

if TYPE_CHECKING:
    from pathlib import Path

    from replay.fleet.inputs import TraceRef
    from replay.fleet.settings import SweepPoint
    from replay.mmu.config import Policy

JOB_FILE = "job.json"
"""Written last into a job's folder, which then appears whole: its presence means complete."""


def tool_version() -> str:
    """The installed kvm-mmu-replay version (what every worker must run too)."""
    return __version__


@dataclass(frozen=True)
class Job:
    """One trace replayed under every policy at one sweep point."""

    trace: TraceRef
    point: SweepPoint
    policies: tuple[Policy, ...]
    mmu: str | None
    bucket_ns: int
    version: str

    @property
    def key(self) -> str:
        """The content key (sha256 hex) of everything the job's runs depend on."""
        doc = {
            "trace_fingerprint": self.trace.fingerprint,
            "mmu": asdict(self.point.cfg),
            "costs": self.point.costs.to_json(),
            "policies": list(self.policies),
            "mmu_mode": self.mmu,
            "bucket_ns": self.bucket_ns,
            "kvm_mmu_replay_version": self.version,
        }
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    @property
    def trace_folder(self) -> str:
        """``<trace name>-<short fingerprint>``, the folder of the trace's jobs."""
        return f"{self.trace.name}-{self.trace.short}"

    @property
    def folder(self) -> str:
        """The job's folder relative to the fleet folder: ``runs/<trace>/<point id>``."""
        return f"runs/{self.trace_folder}/{self.point.id}"


def finished(job: Job, fleet_dir: Path) -> dict[str, Any] | None:
    """The job's record if its complete runs are in ``fleet_dir`` under its key, else None."""
    path = fleet_dir / job.folder / JOB_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != job.key:
        return None
    if not all((fleet_dir / job.folder / p / "summary.json").is_file() for p in job.policies):
        return None
    return doc
