"""Read a run directory back: the one place that checks a folder is a run this version reads.

``replay diff`` and ``replay report`` both start here, so a folder that is not a run, a run of
a newer schema or a damaged ``summary.json`` gets the same one-line error from either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from replay.errors import InputFileError
from replay.run.schema import RUN_SCHEMA_VERSION, SUMMARY_FILE

if TYPE_CHECKING:
    from pathlib import Path

REQUIRED_KEYS = ("policy", "engine", "trace", "config", "totals", "per_vm", "per_vcpu")


class RunFormatError(InputFileError):
    """A folder is not a run, or a run this version cannot read."""


@dataclass(frozen=True)
class RunDir:
    """One policy's run, as ``replay run`` wrote it."""

    path: Path
    summary: dict[str, Any]

    @property
    def policy(self) -> str:
        """The shrinker policy of the run."""
        return str(self.summary["policy"])

    @property
    def fingerprint(self) -> str:
        """The fingerprint of the trace the run replayed."""
        return str(self.summary["trace"].get("fingerprint", ""))

    @property
    def label(self) -> str:
        """A short name for tables and legends: ``<runs folder>/<policy folder>``."""
        parent = self.path.resolve().parent.name
        return f"{parent}/{self.path.name}" if parent else self.path.name

    def file(self, name: str) -> Path:
        """A file of the run, which must exist."""
        path = self.path / name
        if not path.is_file():
            raise RunFormatError(
                f"run {self.path} has no {name}; the run is incomplete or damaged, "
                "write it again with replay run"
            )
        return path


def is_run(path: Path) -> bool:
    """Whether ``path`` looks like a run directory (it has a ``summary.json``)."""
    return (path / SUMMARY_FILE).is_file()


def runs_in(path: Path) -> list[Path]:
    """The run directories directly inside ``path`` (a folder of runs), by name."""
    if is_run(path) or not path.is_dir():
        return []
    return [p for p in sorted(path.iterdir()) if is_run(p)]


def load_run(path: Path) -> RunDir:
    """Check that ``path`` is a run this version reads, and load its ``summary.json``.

    Parameters
    ----------
    path
        One policy's run folder, as ``replay run`` wrote it (``runs/quick/zap``).

    Returns
    -------
    RunDir
        The folder and its summary; :meth:`RunDir.file` finds its other files.

    Raises
    ------
    RunFormatError
        The folder is missing, is not a run (a folder of runs is named as such), or holds a
        summary that is damaged or of a newer run schema.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_run, load_scenario, open_trace, run_policies, write_runs
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> _ = write_runs(run_policies(open_trace("quick.parquet"), ("none",)), Path("runs"))
    >>> run = load_run(Path("runs/none"))
    >>> run.policy, run.summary["totals"]["pages_freed"]
    ('none', 0)
    """
    if not path.exists():
        raise RunFormatError(f"run folder {path} does not exist; give a folder replay run wrote")
    if not path.is_dir():
        raise RunFormatError(
            f"{path} is a file, not a run; give a folder replay run wrote, e.g. runs/quick/zap"
        )
    summary_path = path / SUMMARY_FILE
    if not summary_path.is_file():
        inner = [p.name for p in runs_in(path)]
        if inner:
            raise RunFormatError(
                f"{path} holds runs ({', '.join(inner)}), not one run; give one of them, "
                f"e.g. {path / inner[0]}"
            )
        raise RunFormatError(
            f"{path} is not a run (no summary.json); give a folder replay run wrote, "
            "e.g. runs/quick/zap"
        )
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunFormatError(
            f"{summary_path} cannot be read ({exc}); the run is damaged, write it again with "
            "replay run"
        ) from None
    if not isinstance(summary, dict) or not isinstance(summary.get("schema_version"), int):
        raise RunFormatError(
            f"{summary_path} has no schema_version; it was not written by replay run"
        )
    version = summary["schema_version"]
    if version > RUN_SCHEMA_VERSION:
        raise RunFormatError(
            f"run {path} has run schema v{version}, newer than this kvm-mmu-replay reads "
            f"(v{RUN_SCHEMA_VERSION}); upgrade kvm-mmu-replay"
        )
    if version < 1:
        raise RunFormatError(f"run {path} has unknown run schema v{version}")
    missing = [k for k in REQUIRED_KEYS if k not in summary]
    if missing:
        raise RunFormatError(
            f"{summary_path} lacks {', '.join(missing)}; the run is damaged, write it again "
            "with replay run"
        )
    return RunDir(path, summary)
