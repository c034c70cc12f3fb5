"""The driver's own checks, as a Python caller meets them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from replay.errors import ReplayError

if TYPE_CHECKING:
    from pathlib import Path


def test_make_engine_refuses_an_unknown_engine(tmp_path: Path) -> None:
    from replay.mmu.config import CostModel, MmuConfig
    from replay.run.walks import make_engine
    from replay.synth import generate, load_scenario
    from replay.trace import open_trace

    path = tmp_path / "q.parquet"
    generate(load_scenario("quick", accesses=100), path)
    with pytest.raises(ReplayError, match="unknown engine 'gpu'; use fast or reference"):
        make_engine("gpu", open_trace(path), "zap", MmuConfig(), CostModel())  # type: ignore[arg-type]


def test_the_package_names_its_entry_points_and_loads_them_on_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys, replay.run as run\n"
        "assert 'replay.run.driver' not in sys.modules, 'import replay.run loaded the driver'\n"
        "from replay.run import driver, load, outputs, records\n"
        "want = {'run_policies': driver, 'write_runs': outputs, 'load_run': load,\n"
        "        'RunDir': load, 'Replay': records, 'PolicyRun': records}\n"
        "assert sorted(run.__all__) == sorted(want)\n"
        "for name, module in want.items():\n"
        "    assert getattr(run, name) is getattr(module, name), name\n"
        "try:\n"
        "    run.nothing\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('replay.run.nothing resolved')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
