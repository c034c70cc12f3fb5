"""Where a fleet's jobs run: in this process, on a local Dask cluster, or on a running one.

The executor is the seam between the fleet and Dask: the fleet hands it jobs and a callback,
and gets each job's small outcome back as it ends, in whatever order the jobs end. Nothing but
jobs and outcomes crosses it; the runs are written by the workers straight into the fleet
folder, so the client never holds (or ships) a trace or a run.
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from typing import TYPE_CHECKING, Any, Protocol

from replay.errors import ReplayError
from replay.fleet.jobs import tool_version
from replay.fleet.worker import ONE_CORE_ENV, run_job

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType

    from replay.fleet.jobs import Job

INSTALL_HINT = 'replay fleet needs Dask: pip install "kvm-mmu-replay[fleet]"'
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
CONNECT_TIMEOUT_S = 5
MAX_ATTEMPTS = 3
"""A job whose worker dies this many times is recorded as failed (a local cluster's bound)."""


class FleetError(ReplayError):
    """The fleet cannot run: no Dask, no scheduler, or workers of another version."""


class Executor(Protocol):
    """Runs jobs and reports each one's outcome as it ends."""

    description: str
    local: bool
    """Whether every worker ends with the executor (none can still be writing afterwards)."""

    def run(
        self, jobs: list[Job], fleet_dir: str, on_outcome: Callable[[Job, dict[str, Any]], None]
    ) -> None:
        """Run every job; call ``on_outcome(job, outcome)`` in this thread as each one ends."""

    def __enter__(self) -> Executor: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class InProcessExecutor:
    """Every job in this process, one after the other (``--scheduler inprocess``)."""

    description = "in this process"
    local = True

    def __enter__(self) -> InProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def run(
        self, jobs: list[Job], fleet_dir: str, on_outcome: Callable[[Job, dict[str, Any]], None]
    ) -> None:
        """Run the jobs in order."""
        for job in jobs:
            on_outcome(job, run_job(job, fleet_dir))


class DaskExecutor:
    """Jobs as Dask tasks: a new ``LocalCluster`` (no address), or a running cluster's scheduler.

    A task whose worker dies is given to another worker by the scheduler, up to its
    ``allowed-failures`` bound (``MAX_ATTEMPTS`` on the local cluster); after that the job is
    recorded as failed and the fleet goes on.
    """

    def __init__(self, address: str | None, workers: int | None) -> None:
        self.address = address
        self.local = address is None
        self.workers = workers or os.cpu_count() or 1
        self.description = (
            f"the Dask cluster at {address}"
            if address
            else f"a local Dask cluster of {self.workers} worker process(es)"
        )
        self._client: Any = None
        self._cluster: Any = None

    def __enter__(self) -> DaskExecutor:
        try:
            import dask
            import distributed
        except ImportError:
            raise FleetError(INSTALL_HINT) from None
        # The cluster's own log lines (a worker lost, a task rescheduled) are not the user's
        # business: the fleet reports what they mean, job by job.
        logging.getLogger("distributed").setLevel(logging.CRITICAL)
        if self.address is None:
            # Workers start with replay's own process settings (replay/cli/_process.py)
            # rather than Dask's: no trimming of freed memory (which slows a replay down), and
            # every library's thread pool at one thread: one worker process per core, each
            # replaying its job on that core (replay.fleet.worker.one_core_per_job). Set for
            # good, not for a block: the nanny reads it again to restart a worker.
            dask.config.set(
                {
                    "distributed.nanny.pre-spawn-environ": {
                        **ONE_CORE_ENV,
                        "MIMALLOC_PURGE_DELAY": -1,
                    }
                }
            )
            with dask.config.set({"distributed.scheduler.allowed-failures": MAX_ATTEMPTS - 1}):
                self._cluster = distributed.LocalCluster(  # type: ignore[no-untyped-call]
                    n_workers=self.workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,
                )
            self._client = distributed.Client(self._cluster)  # type: ignore[no-untyped-call]
        else:
            self._client = _connect(distributed, self.address)
        try:
            self._check_versions()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def _check_versions(self) -> None:
        """Refuse workers that run another kvm-mmu-replay than this one."""
        mine = tool_version()
        try:
            self._client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S * 2)
        except (TimeoutError, OSError):
            raise FleetError(
                f"the Dask cluster at {self.address} has no worker; start one with "
                f"dask worker {self.address}"
            ) from None
        # A standard-library function, so that a worker without kvm-mmu-replay answers too
        # (with the exception it raised, returned rather than raised here).
        theirs = self._client.run(metadata.version, "kvm-mmu-replay", on_error="return")
        for worker, version in sorted(theirs.items()):
            if isinstance(version, BaseException):
                raise FleetError(
                    f"worker {worker} cannot run kvm-mmu-replay ({type(version).__name__}: "
                    f"{version}); install kvm-mmu-replay {mine} on every worker"
                )
            if version != mine:
                raise FleetError(
                    f"worker {worker} runs kvm-mmu-replay {version}, this client {mine}; "
                    "install the same version on every worker"
                )

    def run(
        self, jobs: list[Job], fleet_dir: str, on_outcome: Callable[[Job, dict[str, Any]], None]
    ) -> None:
        """Submit every job, then hand on each outcome as its job ends."""
        from distributed import as_completed

        futures = {
            self._client.submit(
                run_job, job, fleet_dir, one_core=True, key=f"replay-job-{job.key}", pure=False
            ): job
            for job in jobs
        }
        try:
            for future in as_completed(futures):  # type: ignore[no-untyped-call]
                job = futures.pop(future)
                outcome = _outcome_of(future, job)
                # Let go of the result at once: a result still wanted when its worker dies is
                # computed again (the job would find its runs on disk and skip, but why ask).
                future.release()
                on_outcome(job, outcome)
        finally:
            # On Ctrl-C the jobs still queued are dropped (their runs were never started) and
            # a job running is abandoned: its temporary folder goes, its finished peers stay.
            self._client.cancel(list(futures))


def _outcome_of(future: Any, job: Job) -> dict[str, Any]:
    """The outcome of a finished task, or a failed outcome saying why it has none."""
    from distributed.client import FutureCancelledError
    from distributed.scheduler import KilledWorker

    try:
        outcome: dict[str, Any] = future.result()
        return outcome
    except KilledWorker:
        error = (
            "the worker running it died at every attempt (the cluster's allowed-failures bound; "
            "the trace may need more memory than a worker has); re-run the fleet to try again"
        )
    except FutureCancelledError:
        error = "cancelled by the cluster"
    except Exception as exc:  # an error inside Dask, or the task's own bug
        error = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    return {
        "key": job.key,
        "status": "failed",
        "error": error,
        "accesses": 0,
        "wall_s": 0.0,
        "worker": None,
    }


def _connect(distributed: Any, address: str) -> Any:
    """A client of the scheduler at ``address``; one clear line if it cannot be reached."""
    try:
        return distributed.Client(address, timeout=f"{CONNECT_TIMEOUT_S}s")
    except (OSError, TimeoutError, ValueError) as exc:
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise FleetError(
            f"cannot reach the Dask scheduler at {address} ({reason}); check the address, or "
            "start one with dask scheduler"
        ) from None


def make_executor(scheduler: str | None, workers: int | None) -> Executor:
    """The executor for ``--scheduler`` (``inprocess``, an address, or none: a local cluster)."""
    if scheduler is None:
        scheduler = os.environ.get(SCHEDULER_ENV) or None
    if scheduler == "inprocess":
        return InProcessExecutor()
    if scheduler is not None and workers is not None:
        raise FleetError(
            "--workers sets the size of the local cluster; a running cluster at --scheduler "
            "has the workers it was started with"
        )
    return DaskExecutor(scheduler, workers)
