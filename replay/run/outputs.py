"""Write a replay's runs: ``DIR/<policy>/`` with faults, scans, timeline and summary.

All the policies of one command are written into a staging folder beside ``DIR`` and moved into
place only when every one is complete, so an error or Ctrl-C leaves no run directory behind.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from replay.atomic import refusal_to_write_in
from replay.errors import OutputPathError
from replay.run.schema import (
    COSTS_CAVEAT,
    FAULTS_FILE,
    FAULTS_ONLY_CAVEAT,
    RUN_SCHEMA_VERSION,
    SCANS_FILE,
    SUMMARY_FILE,
    TIMELINE_COLUMNS,
    TIMELINE_FILE,
    VCPU_CACHE_FILE,
    run_stamp,
)
from replay.run.sink import FAULT_PARQUET, fault_table
from replay.run.summary import summarize_with_timeline

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from replay.run.records import PolicyRun, Replay


def caveats(replay: Replay) -> list[str]:
    """One-line caveats that every output of this replay repeats."""
    out = [COSTS_CAVEAT]
    if replay.trace.meta.coverage == "faults-only":
        out.insert(0, FAULTS_ONLY_CAVEAT)
    return out


def summary_document(
    replay: Replay, run: PolicyRun, blocks: dict[str, Any] | None = None
) -> dict[str, Any]:
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
        **(blocks if blocks is not None else summarize_with_timeline(replay, run)[0]),
    }


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


def _write_parquet(
    table: Any, path: Path, stamp: dict[bytes, bytes], options: dict[str, Any] | None = None
) -> None:
    import pyarrow.parquet as pq

    meta = dict(table.schema.metadata or {})
    meta.update(stamp)
    pq.write_table(
        table.replace_schema_metadata(meta), path, **(options or {"compression": "zstd"})
    )


def write_run(replay: Replay, run: PolicyRun, folder: Path) -> dict[str, Any]:
    """Write one policy's run into ``folder`` (created); return its summary document."""
    import pyarrow as pa

    folder.mkdir()
    stamp = run_stamp(run.policy, replay.fingerprint)
    sink = run.sink
    if sink.spill_path is not None:
        sink.spill_path.replace(folder / FAULTS_FILE)  # written and stamped as it ran
        sink.spill_path = folder / FAULTS_FILE
    else:
        _write_parquet(fault_table(sink.arrays()), folder / FAULTS_FILE, stamp, FAULT_PARQUET)
    _write_parquet(scans_table(run), folder / SCANS_FILE, stamp)
    blocks, tl, vcpu_cache = summarize_with_timeline(replay, run)
    _write_parquet(pa.table({k: tl[k] for k in TIMELINE_COLUMNS}), folder / TIMELINE_FILE, stamp)
    _write_parquet(pa.table(vcpu_cache), folder / VCPU_CACHE_FILE, stamp)
    doc = summary_document(replay, run, blocks)
    (folder / SUMMARY_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _targets(out_dir: Path, policies: tuple[str, ...], force: bool) -> list[Path]:
    targets = [out_dir / p for p in policies]
    for t in targets:
        if t.exists() and not force:
            raise OutputPathError(
                f"run directory {t} exists; pass --force to replace it or choose another -o"
            )
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"output {out_dir} is a file; give a folder for the runs")
    return targets


@contextmanager
def run_staging(out_dir: Path, policies: tuple[str, ...], *, force: bool = False) -> Iterator[Path]:
    """A staging folder beside ``out_dir`` for a replay's files; removed on the way out.

    Checks first that the runs may be written (existing runs need ``force``), so that a long
    replay does not end in a refusal.
    """
    _targets(out_dir, policies, force)
    parent = out_dir.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"cannot create {parent} ({exc.strerror}); choose another -o"
        ) from None
    refused = refusal_to_write_in(parent)
    if refused:
        raise OutputPathError(f"folder {parent} is not writable ({refused}); choose another -o")
    staging = parent / f".{out_dir.name}.{os.getpid()}.partial"
    staging.mkdir()
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def write_runs(
    replay: Replay, out_dir: Path, *, force: bool = False, staging: Path | None = None
) -> list[dict[str, Any]]:
    """Write every policy's run under ``out_dir``, all or nothing.

    Parameters
    ----------
    replay
        What :func:`replay.run_policies` returned.
    out_dir
        The runs folder: each policy's run goes to ``out_dir/<policy>/``.
    force
        Replace existing runs; without it, an existing run is an error.
    staging
        The folder of :func:`run_staging` the replay wrote its fault rows into, if any; without
        one, a staging folder is made here.

    Returns
    -------
    list of dict
        Each run's ``summary.json`` document, in the replay's policy order.

    Raises
    ------
    OutputPathError
        A run exists (without ``force``), or the folder cannot be written.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_scenario, open_trace, run_policies, write_runs
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> docs = write_runs(run_policies(open_trace("quick.parquet"), ("zap",)), Path("runs"))
    >>> sorted(p.name for p in Path("runs/zap").iterdir())
    ['faults.parquet', 'scans.parquet', 'summary.json', 'timeline.parquet', 'vcpu_cache.parquet']
    """
    policies = tuple(run.policy for run in replay.runs)
    if staging is None:
        with run_staging(out_dir, policies, force=force) as fresh:
            return write_runs(replay, out_dir, force=force, staging=fresh)
    targets = _targets(out_dir, policies, force)
    created_out = False
    try:
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
