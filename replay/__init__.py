"""kvm-mmu-replay: replay traces through a model of the x86 KVM MMU and its shrinker.

The supported API is what ``__all__`` lists; everything else may change between versions.
Names are imported on first use, so that ``import replay`` (and ``replay --help``) stays fast.

Examples
--------
>>> from pathlib import Path
>>> from replay import generate, load_scenario, open_trace
>>> result = generate(load_scenario("quick"), Path("quick.parquet"))  # doctest: +SKIP
>>> open_trace("quick.parquet").meta.coverage  # doctest: +SKIP
'all-accesses'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from replay.errors import ReplayError

if TYPE_CHECKING:
    from replay.synth import generate, load_scenario
    from replay.trace import Memslot, TraceMeta, VmSpec, iter_batches, open_trace
    from replay.trace.summary import summarize_trace

_LAZY = {
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
    "Memslot",
    "ReplayError",
    "TraceMeta",
    "VmSpec",
    "generate",
    "iter_batches",
    "load_scenario",
    "open_trace",
    "summarize_trace",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'replay' has no attribute {name!r}")
