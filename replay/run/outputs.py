"""Write a replay's runs: ``DIR/<policy>/`` with faults, scans, timeline and summary.

All the policies of one command are written into a staging folder beside ``DIR`` and moved into
place only when every one is complete, so an error or Ctrl-C leaves no run directory behind.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import numpy as np

from replay._schemas import load_schema
from replay.errors import OutputPathError
from replay.mmu.config import ATTRIBUTIONS, CAUSES, REFILLS
from replay.run.summary import TIMELINE_COLUMNS, summarize, timeline

if TYPE_CHECKING:
    from pathlib import Path

    from replay.run.driver import PolicyRun, Replay

RUN_SCHEMA = load_schema("run.v1")
RUN_SCHEMA_VERSION: int = int(RUN_SCHEMA["schema_version"])
RUN_KEY: str = str(RUN_SCHEMA["metadata_key"])
FAULTS_ONLY_CAVEAT = (
    "faults-only trace: accesses that hit were never recorded, so this replay can only remove "
    "faults the kernel took, not add faults the kernel avoided"
)
COSTS_CAVEAT = "est_ns and every stall figure are estimates from the cost model, not measurements"


def caveats(replay: Replay) -> list[str]:
    """One-line caveats that every output of this replay repeats."""
    out = [COSTS_CAVEAT]
    if replay.trace.meta.coverage == "faults-only":
        out.insert(0, FAULTS_ONLY_CAVEAT)
    return out


def summary_document(replay: Replay, run: PolicyRun) -> dict[str, Any]:
    """The full ``summary.json`` of one policy's run."""
    try:
        tool_version = version("kvm-mmu-replay")
    except PackageNotFoundError:  # pragma: no cover - a bare checkout
        tool_version = "unknown"
    counts = replay.counts
    return {
        "schema_version": RUN_SCHEMA_VERSION,
        "policy": run.policy,
        "engine": run.engine,
        "wall_s": round(run.wall_s, 6),
        "kvm_mmu_replay_version": tool_version,
        "trace": {
            "path": str(replay.trace.path),
            "fingerprint": replay.fingerprint,
            "coverage": replay.trace.meta.coverage,
            "rows": counts.rows,
            "t_first_ns": counts.t_first_ns,
            "t_last_ns": counts.t_last_ns,
        },
        "config": {
            "mmu": asdict(replay.cfg),
            "costs": replay.costs.to_json(),
            "costs_are_estimates": True,
            "bucket_ns": counts.bucket_ns,
        },
        "caveats": caveats(replay),
        **summarize(replay, run),
    }


def _stamp(replay: Replay, run: PolicyRun) -> dict[bytes, bytes]:
    doc = {
        "schema_version": RUN_SCHEMA_VERSION,
        "policy": run.policy,
        "engine": run.engine,
        "trace_fingerprint": replay.fingerprint,
    }
    return {RUN_KEY.encode(): json.dumps(doc).encode()}


def faults_table(run: PolicyRun) -> Any:
    """The fault rows as an Arrow table, enumerations as dictionary-encoded strings."""
    import pyarrow as pa

    f = run.result.faults
    enums = {"cause": CAUSES, "refill": REFILLS, "attribution": ATTRIBUTIONS}
    arrays = {}
    for name, values in f.items():
        if name in enums:
            arrays[name] = pa.DictionaryArray.from_arrays(
                pa.array(values.astype(np.int8)), pa.array(enums[name])
            )
        else:
            arrays[name] = pa.array(values)
    return pa.table(arrays)


def scans_table(run: PolicyRun) -> Any:
    """The scan rows as an Arrow table."""
    import pyarrow as pa

    s = run.result.scans
    return pa.table(
        {
            "row": pa.array([r.row for r in s], pa.int64()),
            "t_ns": pa.array([r.t_ns for r in s], pa.int64()),
            "event": pa.array([r.event for r in s], pa.string()),
            "source": pa.array([r.source for r in s], pa.string()),
            "priority": pa.array([r.priority for r in s], pa.int8()),
            "nr_to_scan": pa.array([r.nr_to_scan for r in s], pa.uint32()),
            "freed": pa.array([r.freed for r in s], pa.uint32()),
            "vms": pa.array([list(r.vms) for r in s], pa.list_(pa.uint16())),
            "freed_by_vm": pa.array([list(r.freed_by_vm) for r in s], pa.list_(pa.uint32())),
            "flush_ns": pa.array([r.flush_ns for r in s], pa.int64()),
        }
    )


def _write_parquet(table: Any, path: Path, stamp: dict[bytes, bytes]) -> None:
    import pyarrow.parquet as pq

    meta = dict(table.schema.metadata or {})
    meta.update(stamp)
    pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd")


def write_run(replay: Replay, run: PolicyRun, folder: Path) -> dict[str, Any]:
    """Write one policy's run into ``folder`` (created); return its summary document."""
    import pyarrow as pa

    folder.mkdir()
    stamp = _stamp(replay, run)
    _write_parquet(faults_table(run), folder / "faults.parquet", stamp)
    _write_parquet(scans_table(run), folder / "scans.parquet", stamp)
    tl = timeline(replay, run)
    _write_parquet(
        pa.table({k: tl[k] for k in TIMELINE_COLUMNS}), folder / "timeline.parquet", stamp
    )
    doc = summary_document(replay, run)
    (folder / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def write_runs(replay: Replay, out_dir: Path, *, force: bool = False) -> list[dict[str, Any]]:
    """Write every policy's run under ``out_dir``, all or nothing."""
    targets = [out_dir / run.policy for run in replay.runs]
    for t in targets:
        if t.exists() and not force:
            raise OutputPathError(
                f"run directory {t} exists; pass --force to replace it or choose another -o"
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"output {out_dir} is a file; give a folder for the runs")
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"cannot create {parent} ({exc.strerror}); choose another -o"
        ) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputPathError(f"folder {parent} is not writable; choose another -o")
    staging = parent / f".{out_dir.name}.{os.getpid()}.partial"
    created_out = False
    try:
        staging.mkdir()
        docs = [write_run(replay, run, staging / run.policy) for run in replay.runs]
        if not out_dir.exists():
            out_dir.mkdir()
            created_out = True
        for run, target in zip(replay.runs, targets, strict=True):
            if target.exists():
                shutil.rmtree(target)
            (staging / run.policy).replace(target)
        return docs
    except BaseException:
        if created_out and out_dir.is_dir() and not any(out_dir.iterdir()):
            out_dir.rmdir()
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
