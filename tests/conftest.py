"""pytest's fixtures and hypothesis profiles; the builders tests import are in ``builders.py``."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.builders import TINY_SCENARIO, write_rows

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from replay.trace.reader import TraceFile
    from replay.trace.schema import TraceMeta
    from tests.builders import Row

settings.register_profile(
    "default", deadline=None, max_examples=25, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    deadline=None,
    max_examples=25,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") else "default")

_BYTECODE_ENV = ("PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE")
_bytecode_saved: dict[str, str | None] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Give the Python processes the tests start one bytecode cache for the whole run.

    Hundreds of tests run ``python -m replay`` (or another interpreter) as a subprocess. Where
    the environment says PYTHONDONTWRITEBYTECODE (as on the project's machines), nothing ever
    writes the package's bytecode, so every one of those processes compiled every module it
    imported again: a third of each command's start. A cache folder of this run's own
    (PYTHONPYCACHEPREFIX, removed at the end) lets the first process compile and the others
    reuse, and still writes nothing into the checkout or the virtual environment. What the
    processes do is the same; only where Python keeps its compiled modules changes.
    """
    if os.environ.get("PYTHONPYCACHEPREFIX"):
        return  # the caller chose a cache: keep it
    _bytecode_saved.update({name: os.environ.get(name) for name in _BYTECODE_ENV})
    os.environ["PYTHONPYCACHEPREFIX"] = tempfile.mkdtemp(prefix="replay-tests-pycache-")
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@pytest.fixture(autouse=True)
def no_reader_thread_left() -> Iterator[None]:
    """Every test leaves no trace-reader thread running that it started.

    A read-ahead worker that outlives its replay (an engine error, an interrupt, a child that
    died) went on holding batches and waited on its full queue for ever; its iterator, caught
    in the error's reference cycle, was then finalized on whichever thread the collector ran,
    sometimes its own. Every replay test now holds the driver to stopping it.
    """
    import threading

    def readers() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "trace-reader"}

    before = readers()
    yield
    left = readers() - before
    for thread in left:
        thread.join(timeout=2)  # a worker stopped just now finishes its last batch
    assert not [t for t in left if t.is_alive()], "a trace-reader thread outlived the test"


def pytest_unconfigure(config: pytest.Config) -> None:
    if not _bytecode_saved:
        return
    shutil.rmtree(os.environ["PYTHONPYCACHEPREFIX"], ignore_errors=True)
    for name, value in _bytecode_saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    _bytecode_saved.clear()


@pytest.fixture
def trace_builder(tmp_path: Path) -> Callable[..., Path]:
    counter = iter(range(1_000_000))

    def build(rows: list[Row], meta: TraceMeta | None = None) -> Path:
        return write_rows(tmp_path / f"t{next(counter)}.parquet", rows, meta)

    return build


@pytest.fixture
def scenario_file(tmp_path: Path) -> Callable[[str], Path]:
    def make(text: str = TINY_SCENARIO, name: str = "s.toml") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return make


@pytest.fixture(scope="session")
def legacy_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``DIR/{zap,none,cache}`` of a 150,000-access legacy-mmu-pressure trace."""
    from replay.run.driver import run_policies
    from replay.run.outputs import write_runs
    from replay.synth import generate, load_scenario
    from replay.trace import open_trace

    root = tmp_path_factory.mktemp("legacy")
    trace = root / "legacy.parquet"
    generate(load_scenario("legacy-mmu-pressure", accesses=150_000), trace)
    replay = run_policies(open_trace(trace), ("zap", "none", "cache"), bucket_ns=50_000_000)
    write_runs(replay, root / "runs")
    return root / "runs"


@pytest.fixture(scope="session")
def other_trace_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zap run of the same scenario with another seed: a different trace."""
    from replay.run.driver import run_policies
    from replay.run.outputs import write_runs
    from replay.synth import generate, load_scenario
    from replay.trace import open_trace

    root = tmp_path_factory.mktemp("other")
    trace = root / "legacy-seed2.parquet"
    generate(load_scenario("legacy-mmu-pressure", accesses=150_000, seed=2), trace)
    write_runs(run_policies(open_trace(trace), ("zap",)), root / "runs")
    return root / "runs" / "zap"


@pytest.fixture(scope="session")
def one_thread_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, str], tuple[TraceFile, dict[str, bytes]]]:
    """``(scenario, mmu) -> (trace, files)``: a shipped scenario's trace with every VM in MMU
    mode ``mmu``, and every file of its runs (``tests.mmu.test_lanes._outputs``) replayed on
    one thread, every policy, made once per session.

    Issue 16's matrices (lanes in tests/mmu/test_lanes.py, processes in tests/run/test_procs.py)
    both hold every other thread count to these files; the one-thread replay they compare with
    is the same, so it is made once for both.
    """
    from replay.mmu.config import POLICIES
    from replay.run.driver import run_policies
    from replay.run.outputs import write_runs
    from replay.synth import generate, load_scenario
    from replay.trace import open_trace
    from tests.mmu.test_lanes import _outputs, _with_mmu

    root = tmp_path_factory.mktemp("one-thread")
    made: dict[tuple[str, str], tuple[TraceFile, dict[str, bytes]]] = {}

    def get(scenario: str, mmu: str) -> tuple[TraceFile, dict[str, bytes]]:
        if (scenario, mmu) not in made:
            folder = root / f"{scenario}-{mmu}"
            folder.mkdir()
            path = root / f"{scenario}.parquet"
            if not path.exists():
                # host-swap's pressure comes by the second (14,000 host events in its 20 s):
                # 2 s of it.
                duration = 2.0 if scenario == "host-swap" else None
                generate(
                    load_scenario(scenario, seed=3, accesses=10_000, duration_s=duration), path
                )
            trace = _with_mmu(open_trace(path), mmu)
            (folder / "work").mkdir()
            replay = run_policies(trace, POLICIES, workdir=folder / "work", threads=1)
            write_runs(replay, folder / "runs")
            made[scenario, mmu] = trace, _outputs(folder / "runs")
        return made[scenario, mmu]

    return get
