"""What a worker does for one job: replay its trace and write its runs, whole or not at all.

The runs are written by the same code as ``replay run`` (:func:`~replay.run.driver.run_policies`
and :func:`~replay.run.outputs.write_runs`), into a temporary folder named after this process,
which is renamed into place with the job's record (``job.json``) inside once everything is
written. A worker killed mid-job leaves only that temporary folder, which the next job in the
same place (or the client at the end) removes.
"""

from __future__ import annotations

import inspect
import json
import os
import shutil
import socket
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

from replay.atomic import PARTIAL_SUFFIX, replace_whole
from replay.errors import ReplayError
from replay.fleet.inputs import local_copy
from replay.fleet.jobs import JOB_FILE, Job, finished

JOB_SCHEMA_VERSION = 1

ONE_CORE_ENV = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "POLARS_MAX_THREADS": "1"}
"""The thread pools a worker process's libraries size when they load, at one thread each:
Arrow's CPU pool (``OMP_NUM_THREADS``), OpenBLAS's (numpy; nothing here uses it), polars'
(read once, when polars is imported; a job never imports it, the fleet's client does)."""


def run_job(job: Job, fleet_dir: str, *, one_core: bool = False) -> dict[str, Any]:
    """Run ``job`` unless its runs are already in ``fleet_dir``; return its small outcome.

    A problem with the job's own input (a trace that cannot be read, a bad row) is the job's
    failure, returned with its one-line message; the fleet goes on. Nothing large travels back
    to the client: the runs are on disk. ``one_core`` replays the job on one core
    (:func:`one_core_per_job`), as a Dask worker does; without it the job replays as
    ``replay run`` does (``--scheduler inprocess``).
    """
    options = tune_worker(one_core)
    root = Path(fleet_dir)
    started = time.perf_counter()
    if not root.is_dir():
        # The client made the folder: a worker that cannot see it is on another host without
        # the shared file system, and runs written here would never reach the fleet.
        return _outcome(
            job,
            "failed",
            started,
            error=f"fleet folder {fleet_dir} does not exist on worker host "
            f"{socket.gethostname()}; every worker must see FLEET_DIR at the same path (a "
            "shared file system)",
        )
    if finished(job, root) is not None:
        return _outcome(job, "skipped", started)
    target = root / job.folder
    target.parent.mkdir(parents=True, exist_ok=True)
    _sweep_own_leftovers(target)
    tmp = target.with_name(f".{target.name}.{_writer()}{PARTIAL_SUFFIX}")
    try:
        # Made now, not when the runs are written: while the job runs, its folder says which
        # process (and host) is working on it.
        tmp.mkdir()
        record = _replay_into(job, tmp, options)
        (tmp / JOB_FILE).write_text(json.dumps(record, indent=2) + "\n")
        if finished(job, root) is None:
            try:
                replace_whole(tmp, target)
            except OSError:
                # Another attempt of the same job (on a worker presumed lost that was not)
                # renamed its folder in first; it holds the same content, so keep it.
                if finished(job, root) is None:
                    raise
    except ReplayError as exc:
        return _outcome(job, "failed", started, error=" ".join(str(exc).split()))
    except Exception as exc:  # a bug: the job fails, the fleet goes on, the message says so
        name = type(exc).__name__
        tb = traceback.format_exc(limit=-3)
        return _outcome(
            job,
            "failed",
            started,
            error=f"internal error in kvm-mmu-replay ({name}: {exc}); this is a bug: {tb}",
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _outcome(job, "done", started, accesses=record["accesses"])


def tune_worker(one_core: bool) -> dict[str, Any]:
    """Settings of this process for a job; return the job's options for ``run_policies``.

    Freed memory is kept for reuse, as ``replay run`` does: a Dask nanny starts its worker
    with ``MALLOC_TRIM_THRESHOLD_`` set, so glibc hands freed memory back to the kernel, and a
    replay pays again for every page it faults back in (see ``replay/cli/_process.py``, which
    makes the same setting for a command's process, and one malloc arena, which a worker
    running a job per thread does without). mallopt still takes effect once the
    libraries are loaded, so it is made here, in every worker however it was started.
    """
    from replay._memory import keep_freed_memory

    keep_freed_memory()
    return one_core_per_job(_jobs_at_once()) if one_core else {}


def one_core_per_job(jobs_at_once: int) -> dict[str, Any]:
    """Make this process replay each of its ``jobs_at_once`` jobs on one core; return options.

    A fleet's parallelism is across jobs: a worker process per core, one job at a time each
    (or a worker of several threads, a job per thread). A job that also spread itself over
    the cores (Arrow decoding on a pool as large as the machine, the next batches read ahead
    and the fault files written on threads of their own, as a lone ``replay run`` does) needs
    no less CPU, only takes it from the other workers' jobs, and makes a fleet of one worker
    use more than its core (``scripts/PERFORMANCE.md``, "Fleets"). So Arrow's CPU and IO pools
    get one thread per job the process runs at once, and the replay keeps everything on its
    own thread. The outputs are the same (the fleet's tests compare them with ``replay run``'s).

    This is the one place a worker's "one core per job" is decided: the returned keyword
    arguments of :func:`~replay.run.driver.run_policies` include ``threads=1`` wherever
    ``run_policies`` takes a thread count (a replay split across threads within a trace).
    """
    import pyarrow as pa

    from replay.run.driver import run_policies

    # Effective if polars is imported after this (a job never imports it; the local cluster
    # sets it before the worker process starts, see replay.fleet.executor).
    os.environ.setdefault("POLARS_MAX_THREADS", ONE_CORE_ENV["POLARS_MAX_THREADS"])
    pa.set_cpu_count(jobs_at_once)
    pa.set_io_thread_count(jobs_at_once)
    options: dict[str, Any] = {"background": False}
    if "threads" in inspect.signature(run_policies).parameters:
        options["threads"] = 1
    return options


def _jobs_at_once() -> int:
    """How many jobs this process runs at once: its Dask worker's threads (1 elsewhere)."""
    try:
        from distributed import get_worker

        return max(1, int(get_worker().state.nthreads))
    except (ImportError, ValueError):  # not on a Dask worker (get_worker raises ValueError)
        return 1


def _writer() -> str:
    """``host-pid``, the writer's name in temporary folder names.

    The host is in it because workers on several hosts may share the fleet folder, and a
    process id means nothing on another host.
    """
    return f"{socket.gethostname()}-{os.getpid()}"


def _sweep_own_leftovers(target: Path) -> None:
    """Remove this job's temporary folders that a killed worker of this host left behind.

    Only this host's: whether the writer of another host's folder is alive cannot be told from
    here. The client removes whatever is left once every job has ended.
    """
    host = socket.gethostname()
    for entry in target.parent.glob(f".{target.name}.{host}-*{PARTIAL_SUFFIX}"):
        pid = entry.name.removesuffix(PARTIAL_SUFFIX).rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _outcome(
    job: Job, status: str, started: float, *, error: str | None = None, accesses: int = 0
) -> dict[str, Any]:
    import resource

    return {
        "key": job.key,
        "status": status,
        "error": error,
        "accesses": accesses,
        "wall_s": round(time.perf_counter() - started, 3),
        "worker": _writer(),
        # The worker process's peak so far (Linux: KiB): a worker streams its job, so this
        # stays that of one replay run however many jobs the worker has done.
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }


def _replay_into(job: Job, out: Path, options: dict[str, Any]) -> dict[str, Any]:
    """Replay the job's trace and write its runs into folder ``out``; return its record.

    ``options`` are extra keyword arguments of ``run_policies`` (:func:`one_core_per_job`).
    """
    from replay.run.driver import run_policies
    from replay.run.folder import runs_folder
    from replay.run.outputs import write_runs
    from replay.trace.reader import open_trace

    with local_copy(job.trace.source) as path:
        tf = with_mmu_mode(open_trace(path), job.mmu)
        with runs_folder(out) as folder:
            replay = run_policies(
                tf,
                job.policies,
                cfg=job.point.cfg,
                costs=job.point.costs,
                bucket_ns=job.bucket_ns,
                workdir=folder.staging,
                **options,
            )
            docs = write_runs(replay, out, folder=folder)
    if job.trace.is_remote:
        # The runs were replayed from a temporary copy: record where the trace really is.
        for doc in docs:
            doc["trace"]["path"] = job.trace.source
            summary = out / str(doc["policy"]) / "summary.json"
            summary.write_text(json.dumps(doc, indent=2) + "\n")
    return {
        "schema_version": JOB_SCHEMA_VERSION,
        "key": job.key,
        "trace": {
            "name": job.trace.name,
            "source": job.trace.source,
            "fingerprint": job.trace.fingerprint,
            "size_bytes": job.trace.size,
        },
        "point": {"id": job.point.id, "values": dict(job.point.values)},
        "policies": list(job.policies),
        "vms": len(tf.meta.vms),
        "vcpus": sum(vm.vcpus for vm in tf.meta.vms),
        "accesses": sum(replay.counts.accesses.values()),
        "rows": replay.counts.rows,
        "wall_s": round(_engines_s(replay.runs) + replay.read_s, 3),
        "worker": _writer(),
        "totals": {str(d["policy"]): d["totals"] for d in docs},
    }


def _engines_s(runs: list[Any]) -> float:
    """The engines' time of a job's runs: a walk that replayed several policies, once."""
    if not runs:
        return 0.0
    from replay.run.walks import walks_of

    walks = walks_of(runs[0].engine, tuple(run.policy for run in runs))
    return float(sum(runs[walk[0]].wall_s for walk in walks))


def with_mmu_mode(tf: Any, mmu: str | None) -> Any:
    """The trace with every VM's MMU mode set to ``mmu`` (``--mmu``), as ``replay run`` does."""
    if mmu is None:
        return tf
    from replay.trace.schema import TraceMeta

    vms = tuple(replace(vm, mmu_mode=mmu) for vm in tf.meta.vms)
    meta = tf.meta
    return replace(
        tf, meta=TraceMeta(vms, meta.coverage, meta.provenance, meta.observed, meta.schema_version)
    )
