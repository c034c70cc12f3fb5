"""kvm-mmu-replay: replay traces through a model of the x86 KVM MMU and its shrinker.

The supported API is what ``__all__`` lists; everything else may change between versions.
Names are imported on first use, so that ``import replay`` (and ``replay --help``) stays fast.

Examples
--------
Generate a small trace from a shipped scenario, replay it under two shrinker policies, write
the runs and compare them (the files go to the current folder):

>>> from pathlib import Path
>>> from replay import diff_runs, generate, load_run, load_scenario, open_trace
>>> from replay import run_policies, write_runs
>>> result = generate(load_scenario("quick", accesses=20_000), Path("quick.parquet"))
>>> open_trace("quick.parquet").meta.coverage
'all-accesses'
>>> docs = write_runs(run_policies(open_trace("quick.parquet"), ("zap", "cache")), Path("runs"))
>>> {doc["policy"]: doc["totals"]["faults_by_attribution"]["zapped_page_tables"] for doc in docs}
{'zap': 702, 'cache': 0}
>>> d = diff_runs(load_run(Path("runs/zap")), load_run(Path("runs/cache")))
>>> d.faults.counts["only_a"]  # faults that only the zapping shrinker caused
702
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from replay._version import __version__ as __version__
from replay.errors import ReplayError

if TYPE_CHECKING:
    from replay.diff import diff_runs
    from replay.fleet import FleetSettings, fleet_table, run_fleet
    from replay.mmu.config import CostModel, MmuConfig
    from replay.report import write_report
    from replay.run.driver import run_policies
    from replay.run.load import load_run
    from replay.run.outputs import write_runs
    from replay.synth import generate, load_scenario
    from replay.trace import Memslot, TraceMeta, VmSpec, iter_batches, open_trace
    from replay.trace.summary import summarize_trace

_LAZY = {
    "CostModel": "replay.mmu.config",
    "MmuConfig": "replay.mmu.config",
    "diff_runs": "replay.diff",
    "FleetSettings": "replay.fleet",
    "fleet_table": "replay.fleet",
    "run_fleet": "replay.fleet",
    "load_run": "replay.run.load",
    "run_policies": "replay.run.driver",
    "write_report": "replay.report",
    "write_runs": "replay.run.outputs",
    "Memslot": "replay.trace",
    "TraceMeta": "replay.trace",
    "VmSpec": "replay.trace",
    "generate": "replay.synth",
    "iter_batches": "replay.trace",
    "load_scenario": "replay.synth",
    "open_trace": "replay.trace",
    "summarize_trace": "replay.trace.summary",
}

__all__ = [
    "CostModel",
    "FleetSettings",
    "Memslot",
    "MmuConfig",
    "ReplayError",
    "TraceMeta",
    "VmSpec",
    "diff_runs",
    "fleet_table",
    "generate",
    "iter_batches",
    "load_run",
    "load_scenario",
    "open_trace",
    "run_fleet",
    "run_policies",
    "summarize_trace",
    "write_report",
    "write_runs",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'replay' has no attribute {name!r}")
