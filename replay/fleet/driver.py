"""Run a fleet: plan the jobs, skip the finished ones, run the rest, write the fleet's tables.

``FLEET_DIR`` holds ``runs/<trace>-<fingerprint>/<sweep point>/<policy>/`` (each a run as
``replay run`` writes it), ``fleet.parquet`` (one row per trace, sweep point and policy) and
``fleet.json`` (settings, jobs, distributions, worst traces, frontier). ``fleet.json`` is first
written when the fleet starts, so a fleet folder always says which settings it holds.
"""

from __future__ import annotations

import json
import shutil
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from replay._schemas import load_schema
from replay.atomic import PARTIAL_SUFFIX, atomic_output, output_lock, refusal_to_write_in
from replay.errors import OutputPathError
from replay.fleet.executor import make_executor
from replay.fleet.figures import distributions, frontier, worst
from replay.fleet.inputs import expand_inputs
from replay.fleet.jobs import Job, finished, tool_version
from replay.fleet.settings import Sweep, grid, mmu_overrides
from replay.fleet.table import build_table, job_rows
from replay.mmu.config import CostModel, MmuConfig
from replay.run.driver import DEFAULT_BUCKET_NS

if TYPE_CHECKING:
    from collections.abc import Callable

    import polars as pl

    from replay.fleet.executor import Executor
    from replay.fleet.inputs import TraceRef
    from replay.mmu.config import Policy

FLEET_SCHEMA = load_schema("fleet.v1")
FLEET_JSON = "fleet.json"
FLEET_PARQUET = "fleet.parquet"


@dataclass(frozen=True)
class FleetSettings:
    """Everything a fleet's runs depend on, apart from its traces.

    Parameters
    ----------
    policies : tuple of str
        The shrinker policies every job replays, in one pass.
    mmu : str or None
        Replay every VM with this MMU mode (``--mmu``), or as the trace says.
    cfg : MmuConfig
        The base constants (``--model``), which the sweeps override.
    costs : CostModel
        The base cost estimates (``--costs``), which the sweeps override.
    sweeps : tuple of Sweep
        ``--sweep`` options (:func:`~replay.fleet.parse_sweep`); several make a grid.
    bucket_ns : int
        Width of the timelines' time buckets.

    Examples
    --------
    >>> from replay import FleetSettings
    >>> from replay.fleet import parse_sweep
    >>> s = FleetSettings(policies=("zap", "cache"), sweeps=(parse_sweep("seeks=2,20"),))
    >>> s.to_json()["sweeps"]
    [{'key': 'seeks', 'values': [2, 20]}]
    """

    policies: tuple[Policy, ...] = ("zap", "none", "cache")
    mmu: str | None = None
    cfg: MmuConfig = field(default_factory=MmuConfig)
    costs: CostModel = field(default_factory=CostModel)
    sweeps: tuple[Sweep, ...] = ()
    bucket_ns: int = DEFAULT_BUCKET_NS

    def to_json(self) -> dict[str, Any]:
        """The settings as ``fleet.json`` records them (and compares them on a re-run)."""
        return {
            "policies": list(self.policies),
            "mmu_mode": self.mmu,
            "model": mmu_overrides(self.cfg),
            "costs": self.costs.to_json(),
            "sweeps": [{"key": s.key, "values": list(s.values)} for s in self.sweeps],
            "bucket_ns": self.bucket_ns,
            "kvm_mmu_replay_version": tool_version(),
        }


@dataclass
class FleetResult:
    """A finished fleet: its table, its ``fleet.json`` document, and where they are."""

    fleet_dir: Path
    table: pl.DataFrame
    doc: dict[str, Any]

    @property
    def failed(self) -> list[dict[str, Any]]:
        """The jobs that failed, each with its one-line error."""
        return [j for j in self.doc["jobs"] if j["status"] == "failed"]


def plan(refs: list[TraceRef], settings: FleetSettings) -> list[Job]:
    """One job per trace and sweep point; a trace named twice (same name and content) once."""
    points = grid(settings.sweeps, settings.cfg, settings.costs)
    version = tool_version()
    jobs: dict[str, Job] = {}
    for ref in refs:
        for point in points:
            job = Job(ref, point, settings.policies, settings.mmu, settings.bucket_ns, version)
            jobs.setdefault(job.folder, job)
    return list(jobs.values())


def run_fleet(
    inputs: list[str],
    fleet_dir: Path,
    settings: FleetSettings | None = None,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    force: bool = False,
    on_outcome: Callable[[Job, dict[str, Any]], None] | None = None,
    on_plan: Callable[[list[Job], list[Job]], None] | None = None,
) -> FleetResult:
    """Replay every trace of ``inputs`` at every sweep point; return the fleet's table.

    Jobs whose runs are already in ``fleet_dir`` (by content key) are skipped; the others run
    on the executor, and ``fleet.parquet`` and ``fleet.json`` are written at the end.

    Parameters
    ----------
    inputs : list of str
        Trace files, folders of traces, globs, or ``pyarrow.fs`` URIs (``s3://...``).
    fleet_dir : Path
        The fleet folder: runs, ``fleet.parquet``, ``fleet.json``.
    settings : FleetSettings, optional
        Policies, model, costs and sweeps (default: all policies, no sweep).
    scheduler : str, optional
        ``None`` (a local Dask cluster of ``workers`` processes), ``"inprocess"``, or a Dask
        scheduler's address.
    workers : int, optional
        Worker processes of the local cluster (default: one per core).
    force : bool
        Replace a fleet of other settings in ``fleet_dir``.
    on_outcome, on_plan : callable, optional
        Called with each job and its outcome as it ends; with the jobs and the pending ones
        once the plan is known (for a progress bar).

    Returns
    -------
    FleetResult
        The fleet table (a polars DataFrame), the ``fleet.json`` document, the failed jobs.

    Raises
    ------
    ReplayError
        An input names nothing, an option is invalid, the folder holds a fleet of other
        settings, or the cluster cannot be used (a failed job is not an error: it is listed).

    Examples
    --------
    >>> from pathlib import Path
    >>> from replay import FleetSettings, generate, load_scenario, run_fleet
    >>> Path("traces").mkdir()
    >>> _ = generate(load_scenario("quick", accesses=20_000), Path("traces/quick.parquet"))
    >>> result = run_fleet(["traces/"], Path("fleet"), FleetSettings(), scheduler="inprocess")
    >>> result.doc["counts"]["done"], result.failed
    (1, [])
    """
    settings = settings or FleetSettings()
    refs = expand_inputs(inputs)
    jobs = plan(refs, settings)
    executor = make_executor(scheduler, workers)
    # Everything that can refuse the command is checked before the folder is touched.
    if fleet_dir.is_dir():
        _check_settings(fleet_dir, settings, force)
    return _run(executor, jobs, fleet_dir, settings, inputs, force, on_outcome, on_plan)


class _LeftoversOnError:
    """On Ctrl-C or an error, remove the temporary folders of the jobs that were running.

    Entered first, so it ends last: after the executor (a local cluster's workers end with it,
    so none can still be writing) and only once this fleet held the folder's lock (``armed``),
    so that a fleet refused because another one is running never touches that one's folders.
    """

    def __init__(self, fleet_dir: Path, jobs: list[Job], local: bool) -> None:
        self.fleet_dir, self.jobs, self.local = fleet_dir, jobs, local
        self.armed = False

    def __enter__(self) -> _LeftoversOnError:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        if exc_type is not None and self.armed and self.local:
            _remove_leftovers(self.fleet_dir, self.jobs)


def _run(
    executor: Executor,
    jobs: list[Job],
    fleet_dir: Path,
    settings: FleetSettings,
    inputs: list[str],
    force: bool,
    on_outcome: Callable[[Job, dict[str, Any]], None] | None,
    on_plan: Callable[[list[Job], list[Job]], None] | None,
) -> FleetResult:
    """Run the pending jobs of a planned fleet and write its tables (see :func:`run_fleet`)."""
    outcomes: dict[str, dict[str, Any]] = {}

    def keep(job: Job, outcome: dict[str, Any]) -> None:
        outcomes[job.key] = outcome
        if on_outcome is not None:
            on_outcome(job, outcome)

    with ExitStack() as stack:
        leftovers = stack.enter_context(_LeftoversOnError(fleet_dir, jobs, executor.local))
        started = any(finished(job, fleet_dir) is None for job in jobs)
        if started:
            # Start (or reach) the cluster first: an unreachable scheduler or a worker of
            # another version leaves no fleet folder behind.
            stack.enter_context(executor)
        _prepare(fleet_dir)
        stack.enter_context(output_lock(fleet_dir, "fleet folder"))  # one fleet writer at a time
        leftovers.armed = True
        _check_settings(fleet_dir, settings, force)
        if force:
            _remove_unplanned(fleet_dir, jobs)
        _write_json(fleet_dir, _document(settings, inputs, jobs, {}, None, state="running"))
        pending = []
        for job in jobs:
            if finished(job, fleet_dir) is not None:
                outcomes[job.key] = {"key": job.key, "status": "skipped", "error": None}
            else:
                pending.append(job)
        if on_plan is not None:
            on_plan(jobs, pending)
        if pending:
            if not started:  # a job's runs went missing since the first look
                stack.enter_context(executor)
            executor.run(pending, str(fleet_dir.resolve()), keep)
        _remove_leftovers(fleet_dir, jobs)
        table = _table(fleet_dir, jobs, outcomes, settings)
        doc = _document(settings, inputs, jobs, outcomes, table, state="complete")
        with atomic_output(fleet_dir / FLEET_PARQUET, "fleet table") as tmp:
            table.write_parquet(tmp, statistics=False)
        _write_json(fleet_dir, doc)
    return FleetResult(fleet_dir, table, doc)


def _prepare(fleet_dir: Path) -> None:
    if fleet_dir.exists() and not fleet_dir.is_dir():
        raise OutputPathError(f"fleet folder {fleet_dir} is a file; give a folder (-o)")
    try:
        fleet_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"cannot create fleet folder {fleet_dir} ({exc.strerror}); choose another -o"
        ) from None
    refused = refusal_to_write_in(fleet_dir)
    if refused:
        raise OutputPathError(
            f"fleet folder {fleet_dir} is not writable ({refused}); choose another -o"
        )


def read_fleet_json(fleet_dir: Path) -> dict[str, Any] | None:
    """The folder's ``fleet.json``, or None if it has none; a damaged one is an error."""
    path = fleet_dir / FLEET_JSON
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OutputPathError(
            f"{path} cannot be read ({exc}); remove it or pass --force to start the fleet anew"
        ) from None
    if not isinstance(doc, dict) or doc.get("kind") != FLEET_SCHEMA["name"]:
        raise OutputPathError(f"{path} is not a fleet's summary; choose another -o")
    return doc


def _check_settings(fleet_dir: Path, settings: FleetSettings, force: bool) -> None:
    """Refuse a folder that holds a fleet of other settings (unless ``force``)."""
    if force:
        return
    if fleet_dir.exists() and any(fleet_dir.iterdir()) and not (fleet_dir / FLEET_JSON).exists():
        raise OutputPathError(
            f"fleet folder {fleet_dir} is not empty and holds no fleet; choose another -o or "
            "pass --force"
        )
    doc = read_fleet_json(fleet_dir)
    if doc is None:
        return
    theirs, mine = doc.get("settings", {}), settings.to_json()
    changed = sorted(k for k in mine.keys() | theirs.keys() if theirs.get(k) != mine.get(k))
    if changed:
        raise OutputPathError(
            f"fleet folder {fleet_dir} holds a fleet of other settings ({', '.join(changed)} "
            "differ); choose another -o, or pass --force to replace it"
        )


def _remove_unplanned(fleet_dir: Path, jobs: list[Job]) -> None:
    """With ``--force``: remove the job folders this fleet does not plan (finished ones stay)."""
    runs = fleet_dir / "runs"
    if not runs.is_dir():
        return
    keep = {Path(j.folder).parts[1]: set() for j in jobs}  # type: dict[str, set[str]]
    for j in jobs:
        keep[Path(j.folder).parts[1]].add(j.point.id)
    for trace_dir in runs.iterdir():
        if trace_dir.name not in keep:
            shutil.rmtree(trace_dir, ignore_errors=True)
            continue
        for point_dir in trace_dir.iterdir():
            if point_dir.name not in keep[trace_dir.name]:
                shutil.rmtree(point_dir, ignore_errors=True)


def _remove_leftovers(fleet_dir: Path, jobs: list[Job]) -> None:
    """Remove the temporary folders of attempts that died: every job has ended by now."""
    for trace_dir in {(fleet_dir / j.folder).parent for j in jobs}:
        if not trace_dir.is_dir():
            continue
        for entry in trace_dir.iterdir():
            if entry.name.startswith(".") and entry.name.endswith(PARTIAL_SUFFIX):
                shutil.rmtree(entry, ignore_errors=True)


def _table(
    fleet_dir: Path,
    jobs: list[Job],
    outcomes: dict[str, dict[str, Any]],
    settings: FleetSettings,
) -> pl.DataFrame:
    point_index = {
        p.id: i for i, p in enumerate(grid(settings.sweeps, settings.cfg, settings.costs))
    }
    rows = []
    for job in jobs:
        record = finished(job, fleet_dir)
        outcome = outcomes.get(job.key, {})
        error = outcome.get("error") if record is None else None
        if record is None and error is None:
            error = (
                "its worker reported it done but its runs are not in the fleet folder; every "
                "worker must write FLEET_DIR at the same path (a shared file system)"
                if outcome.get("status") in ("done", "skipped")
                else "not run (the fleet was interrupted)"
            )
        rows.extend(job_rows(job, record, error, point_index[job.point.id]))
    return build_table(rows, [s.key for s in settings.sweeps])


def _document(
    settings: FleetSettings,
    inputs: list[str],
    jobs: list[Job],
    outcomes: dict[str, dict[str, Any]],
    table: pl.DataFrame | None,
    *,
    state: str,
) -> dict[str, Any]:
    """The ``fleet.json`` document (schema ``fleet.v1``)."""
    job_docs = []
    for job in jobs:
        outcome = outcomes.get(job.key, {})
        job_docs.append(
            {
                "key": job.key,
                "trace": job.trace.name,
                "fingerprint": job.trace.fingerprint,
                "source": job.trace.source,
                "point": job.point.id,
                "folder": job.folder,
                "status": outcome.get("status", "pending"),
                "error": outcome.get("error"),
                "worker": outcome.get("worker"),
                "wall_s": outcome.get("wall_s"),
                "peak_rss_mib": outcome.get("peak_rss_mib"),
            }
        )
    counts = {s: sum(j["status"] == s for j in job_docs) for s in ("done", "skipped", "failed")}
    doc: dict[str, Any] = {
        "schema_version": FLEET_SCHEMA["schema_version"],
        "kind": FLEET_SCHEMA["name"],
        "state": state,
        "settings": settings.to_json(),
        "inputs": list(inputs),
        "points": [
            {"id": p.id, "values": dict(p.values), "mmu": asdict(p.cfg), "costs": p.costs.to_json()}
            for p in grid(settings.sweeps, settings.cfg, settings.costs)
        ],
        "counts": {"traces": len({j.trace.fingerprint for j in jobs}), "jobs": len(jobs), **counts},
        "jobs": job_docs,
    }
    if table is not None:
        doc["distributions"] = distributions(table)
        doc["worst"] = worst(table)
        doc["frontier"] = frontier(table)
    doc["caveats"] = [
        "stall figures are estimates from the cost model (MODEL.md rule 18), not measurements"
    ]
    return doc


def _write_json(fleet_dir: Path, doc: dict[str, Any]) -> None:
    with atomic_output(fleet_dir / FLEET_JSON, "fleet summary") as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
