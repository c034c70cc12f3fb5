"""``replay run``: replay a trace under shrinker policies and write each policy's run.

The modules, in the order data flows through them:

* :mod:`.driver` reads the trace once and feeds every policy's engine (:func:`run_policies`);
* :mod:`.procs` replays the policies in child processes, fed that one read through the shared
  batch ring of :mod:`.ring`;
* :mod:`.sink` writes each engine's fault rows to Parquet as they come (:class:`FaultSink`);
* :mod:`.stats` accumulates the fault statistics from those rows as they pass;
* :mod:`.records` holds what a replay produced (:class:`Replay`, :class:`PolicyRun`);
* :mod:`.summary` builds ``summary.json``'s blocks, the timeline and the cache levels;
* :mod:`.outputs` writes the run folders, all or nothing (:func:`write_runs`);
* :mod:`.schema` names the run format's files, version and footer stamp;
* :mod:`.load` reads a run folder back and checks it (:func:`load_run`);
* :mod:`.table` lays out the policy comparison ``replay run`` and ``replay report`` show.

Names are imported on first use: reading a run (``replay diff``, ``replay report``) never loads
the driver or the engines.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from replay.run.driver import run_policies
    from replay.run.load import RunDir, load_run
    from replay.run.outputs import write_runs
    from replay.run.records import PolicyRun, Replay

_LAZY = {
    "PolicyRun": "replay.run.records",
    "Replay": "replay.run.records",
    "RunDir": "replay.run.load",
    "load_run": "replay.run.load",
    "run_policies": "replay.run.driver",
    "write_runs": "replay.run.outputs",
}

__all__ = ["PolicyRun", "Replay", "RunDir", "load_run", "run_policies", "write_runs"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'replay.run' has no attribute {name!r}")
