"""Read a generated trace back whole, through the validating reader."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from replay.trace import TraceFile, iter_batches, open_trace

if TYPE_CHECKING:
    from pathlib import Path


def read_all(path: Path) -> tuple[TraceFile, dict[str, np.ndarray]]:
    trace = open_trace(path)
    batches = list(iter_batches(trace))
    fields = (
        "t_ns",
        "event",
        "vm",
        "vcpu",
        "gpa",
        "len",
        "op",
        "source",
        "priority",
        "nid",
        "nr_to_scan",
    )
    if not batches:
        return trace, {f: np.empty(0) for f in fields}
    cols = {f: np.concatenate([getattr(b, f) for b in batches]) for f in fields}
    return trace, cols
