"""The process-lane prototype of ``scripts/bench_lanes.py`` gives the rows of one lane.

Its measurements (ENGINE.md, "Lanes") mean something only if the lanes in processes replay the
same thing: every epoch split, in pieces of any size, the worker reaped at the end.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import bench_lanes
import pytest

from replay.mmu.engine import VectorEngine
from replay.synth import generate, load_scenario
from replay.trace import open_trace
from replay.trace.reader import iter_batches

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize("scenario", ["many-small-vms", "legacy-mmu-pressure"])
def test_process_lanes_give_the_rows_of_one_lane(tmp_path: Path, scenario: str) -> None:
    path = tmp_path / "t.parquet"
    generate(load_scenario(scenario, seed=4, accesses=20_000), path)
    trace = open_trace(path)
    batches = list(iter_batches(trace, batch_rows=7_000))
    answers: list[int] = []
    stopped: list[int] = []
    answer, stop = bench_lanes.Worker.answer, bench_lanes.Worker.stop

    def counted_answer(worker: bench_lanes.Worker) -> Any:
        answers.append(worker.pid)
        return answer(worker)

    def recorded_stop(worker: bench_lanes.Worker) -> None:
        stopped.append(worker.pid)
        stop(worker)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bench_lanes.Worker, "answer", counted_answer)
        mp.setattr(bench_lanes.Worker, "stop", recorded_stop)
        mp.setattr(bench_lanes, "MIN_SPLIT", 0)
        mp.setattr(bench_lanes, "PIECE", 999)
        mp.setattr(VectorEngine, "_EPOCH_MAX", 333)
        one = bench_lanes.replay_once(trace, batches, 1, bench_lanes.Setup())
        for lanes, setup in (
            (2, bench_lanes.Setup()),
            (2, bench_lanes.Setup(share0=0.0, serial=True)),
            (3, bench_lanes.Setup(share0=0.5, trim=True)),
        ):
            answers.clear()
            got = bench_lanes.replay_once(trace, batches, lanes, setup)
            assert got["digest"] == one["digest"], (lanes, setup)
            assert len(set(answers)) == lanes - 1  # every worker answered (epochs were split)
            assert len(answers) > 10
    assert len(stopped) == 4
    for pid in stopped:  # every worker was reaped: none is left, not even as a zombie
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
