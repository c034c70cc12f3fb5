"""Jobs' content keys, the outcome of a job whose worker kept dying, and folders refused."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from replay.errors import OutputPathError
from replay.fleet.driver import FleetSettings, run_fleet
from replay.fleet.executor import _outcome_of
from replay.fleet.inputs import TraceRef
from replay.fleet.jobs import Job
from replay.fleet.settings import grid, parse_sweep
from replay.mmu.config import CostModel, MmuConfig


def _job(**changes: Any) -> Job:
    ref = TraceRef("/traces/a.parquet", "a", 100, "sha256:" + "ab" * 32)
    (point,) = grid((), MmuConfig(), CostModel())
    job = Job(ref, point, ("zap", "cache"), None, 100_000_000, "0.1.0")
    return replace(job, **changes)


def test_the_key_is_the_content_and_nothing_else() -> None:
    base = _job()
    # Where the trace is read from and what it is called do not change the runs.
    moved = _job(trace=TraceRef("s3://b/k/x.parquet", "x", 100, base.trace.fingerprint))
    assert moved.key == base.key
    (c20,) = grid((parse_sweep("cache_capacity=20"),), MmuConfig(), CostModel())
    (flush,) = grid((parse_sweep("costs.zap_flush_ns=0"),), MmuConfig(), CostModel())
    changed = [
        _job(trace=TraceRef("/traces/a.parquet", "a", 100, "sha256:" + "cd" * 32)),
        _job(point=c20),
        _job(point=flush),
        _job(policies=("zap",)),
        _job(mmu="shadow_direct"),
        _job(bucket_ns=50_000_000),
        _job(version="0.2.0"),
    ]
    keys = {j.key for j in changed}
    assert len(keys) == len(changed)
    assert base.key not in keys
    assert base.folder == f"runs/a-{'ab' * 6}/default"


class _Dead:
    """A future whose task's worker died at every attempt."""

    def result(self) -> Any:
        from distributed.scheduler import KilledWorker

        last_worker: Any = "tcp://127.0.0.1:1"  # only its name is shown
        raise KilledWorker("replay-job-x", last_worker, 3)


def test_a_job_whose_worker_kept_dying_is_a_failed_job() -> None:
    outcome = _outcome_of(_Dead(), _job())
    assert outcome["status"] == "failed"
    assert "died at every attempt" in outcome["error"]
    assert outcome["key"] == _job().key


def test_a_folder_that_holds_something_else_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").mkdir()
    (tmp_path / "f" / "notes.txt").write_text("mine\n")
    trace = Path(__file__).resolve().parents[2] / "traces" / "samples" / "quick.parquet"
    with pytest.raises(OutputPathError, match="is not empty and holds no fleet"):
        run_fleet([str(trace)], tmp_path / "f", FleetSettings(), scheduler="inprocess")
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == ["notes.txt"]


def test_a_worker_that_cannot_see_the_fleet_folder_fails_the_job(tmp_path: Path) -> None:
    from replay.fleet.worker import run_job

    outcome = run_job(_job(), str(tmp_path / "elsewhere"))
    assert outcome["status"] == "failed"
    assert "does not exist on worker host" in outcome["error"]
    assert not (tmp_path / "elsewhere").exists()  # nothing made on the worker's own disk


def test_the_scheduler_comes_from_the_option_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from replay.fleet.executor import DaskExecutor, FleetError, InProcessExecutor, make_executor

    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS", raising=False)
    local = make_executor(None, 3)
    assert isinstance(local, DaskExecutor)
    assert (local.address, local.workers, local.local) == (None, 3, True)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://10.0.0.1:8786")
    remote = make_executor(None, None)
    assert isinstance(remote, DaskExecutor)
    assert (remote.address, remote.local) == ("tcp://10.0.0.1:8786", False)
    assert isinstance(make_executor("inprocess", None), InProcessExecutor)
    with pytest.raises(FleetError, match="--workers sets the size of the local cluster"):
        make_executor(None, 2)


def test_a_job_on_one_core_writes_what_replay_run_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dask worker's job replays on one core (no read-ahead or writer thread, Arrow's pools at
    one thread); its runs are byte for byte those of a job replayed as replay run replays. The
    fault files are spilled 97 rows at a time, so the writer's work happens hundreds of times
    on the replay's own thread, between batches of 3,000 rows."""
    import inspect

    import pyarrow as pa
    import pyarrow.parquet as pq

    import replay.run.driver as driver_module
    import replay.run.sink as sink_module
    import replay.trace.reader as reader_module
    from replay.fleet.driver import plan
    from replay.fleet.inputs import expand_inputs
    from replay.fleet.worker import one_core_per_job, run_job
    from replay.run.driver import run_policies
    from replay.synth import generate, load_scenario
    from tests.fleet.helpers import assert_same_fleet_runs

    trace = tmp_path / "t.parquet"
    generate(load_scenario("legacy-mmu-pressure", seed=3, accesses=30_000), trace)
    (job,) = plan(expand_inputs([str(trace)]), FleetSettings())
    monkeypatch.setattr(sink_module, "SPILL_ROWS", 97)
    batches = reader_module.iter_batches
    monkeypatch.setattr(
        driver_module, "iter_batches", lambda trace, **kw: batches(trace, 3_000, **kw)
    )
    monkeypatch.delenv("POLARS_MAX_THREADS", raising=False)
    (tmp_path / "threads").mkdir()
    (tmp_path / "one").mkdir()
    cpu, io = pa.cpu_count(), pa.io_thread_count()
    try:
        assert run_job(job, str(tmp_path / "threads"))["status"] == "done"
        assert run_job(job, str(tmp_path / "one"), one_core=True)["status"] == "done"
        assert (pa.cpu_count(), pa.io_thread_count()) == (1, 1)
        options = one_core_per_job(2)
        assert (pa.cpu_count(), pa.io_thread_count()) == (2, 2)
    finally:
        pa.set_cpu_count(cpu)
        pa.set_io_thread_count(io)
    assert_same_fleet_runs(tmp_path / "one", tmp_path / "threads")
    faults = pq.read_metadata(next((tmp_path / "one").rglob("zap/faults.parquet")))
    assert faults.num_row_groups > 20
    assert options["background"] is False
    # Every option is one run_policies takes (threads=1 too, once it takes a thread count).
    parameters = inspect.signature(run_policies).parameters
    assert set(options) <= set(parameters)
    assert ("threads" in options) == ("threads" in parameters)
    assert os.environ["POLARS_MAX_THREADS"] == "1"
