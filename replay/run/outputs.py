"""Write a replay's runs: ``DIR/<policy>/`` with faults, scans, timeline and summary.

All the policies of one command are written into a staging folder beside ``DIR`` and put in
place as one set only when every one is complete (:mod:`replay.run.folder`), so an error or
Ctrl-C leaves the folder as it was: no run directory, or the old set whole.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from replay._arrays import arrow_table
from replay._version import __version__
from replay.atomic import raise_if_disk_full
from replay.run.fidelity import (
    FAULTS_ONLY,
    SAMPLED_COVERAGES,
    SAMPLED_ESTIMATES,
    SAMPLING_VALIDATION,
    fidelity_caveat,
    likely_reasons,
    sampled_caveat,
)
from replay.run.folder import RunsFolder, runs_folder
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
    from pathlib import Path

    from replay.run.records import PolicyRun, Replay


def caveats(replay: Replay) -> list[str]:
    """One-line caveats that every output of this replay repeats."""
    out = [COSTS_CAVEAT]
    meta = replay.trace.meta
    if meta.coverage in (FAULTS_ONLY, "faults+sampled"):
        out[:0] = [FAULTS_ONLY_CAVEAT, fidelity_caveat(likely_reasons(meta.provenance))]
    if meta.coverage in SAMPLED_COVERAGES:
        out[:0] = [sampled_caveat(meta.coverage, *_seen(replay))]
    return out


def _seen(replay: Replay) -> tuple[int, int]:
    """Region rows of the trace, and those in which DAMON found an access."""
    return len(replay.counts.region_rows), replay.counts.regions_accessed


def summary_document(
    replay: Replay, run: PolicyRun, blocks: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The full ``summary.json`` of one policy's run."""
    counts = replay.counts
    return {
        "schema_version": RUN_SCHEMA_VERSION,
        "policy": run.policy,
        "engine": run.engine,
        "wall_s": round(run.wall_s, 6),
        "kvm_mmu_replay_version": __version__,
        "trace": {
            "path": str(replay.trace.path),
            "fingerprint": replay.fingerprint,
            "coverage": replay.trace.meta.coverage,
            "rows": counts.rows,
            "t_first_ns": counts.t_first_ns,
            "t_last_ns": counts.t_last_ns,
            **(
                {"likely_reasons": likely_reasons(replay.trace.meta.provenance)}
                if replay.trace.meta.coverage in (FAULTS_ONLY, "faults+sampled")
                else {}
            ),
            **(
                {
                    "sampling": {
                        "estimates": list(SAMPLED_ESTIMATES),
                        "region_rows": _seen(replay)[0],
                        "region_rows_accessed": _seen(replay)[1],
                        **SAMPLING_VALIDATION,
                    }
                }
                if replay.trace.meta.coverage in SAMPLED_COVERAGES
                else {}
            ),
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
    _write_parquet(arrow_table({k: tl[k] for k in TIMELINE_COLUMNS}), folder / TIMELINE_FILE, stamp)
    _write_parquet(arrow_table(vcpu_cache), folder / VCPU_CACHE_FILE, stamp)
    doc = summary_document(replay, run, blocks)
    (folder / SUMMARY_FILE).write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def write_runs(
    replay: Replay, out_dir: Path, *, force: bool = False, folder: RunsFolder | None = None
) -> list[dict[str, Any]]:
    """Write every policy's run under ``out_dir``, all or nothing, as one set.

    Parameters
    ----------
    replay
        What :func:`replay.run_policies` returned.
    out_dir
        The runs folder: each policy's run goes to ``out_dir/<policy>/``. It holds one
        replay's set of runs (see :mod:`replay.run.folder`).
    force
        Replace the set of runs ``out_dir`` holds, as a whole; without it, a folder that is not
        empty is an error.
    folder
        The locked folder of :func:`replay.run.folder.runs_folder` the replay wrote its fault
        rows into, if any; without one, the folder is locked and checked here.

    Returns
    -------
    list of dict
        Each run's ``summary.json`` document, in the replay's policy order.

    Raises
    ------
    OutputPathError
        The folder holds runs (without ``force``) or other files, another command is writing
        it, it cannot be written, or the disk is full.

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import generate, load_scenario, open_trace, run_policies, write_runs
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
    >>> docs = write_runs(run_policies(open_trace("quick.parquet"), ("zap",)), Path("runs"))
    >>> sorted(p.name for p in Path("runs/zap").iterdir())
    ['faults.parquet', 'scans.parquet', 'summary.json', 'timeline.parquet', 'vcpu_cache.parquet']
    """
    if folder is None:
        with runs_folder(out_dir, force=force) as fresh:
            return write_runs(replay, out_dir, force=force, folder=fresh)
    docs = []
    for run in replay.runs:
        try:
            docs.append(write_run(replay, run, folder.staging / run.policy))
        except OSError as exc:
            raise_if_disk_full(exc, out_dir / run.policy, "run")
            raise
    folder.put_in_place()
    return docs
