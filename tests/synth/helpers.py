"""Read a generated trace back whole, through the validating reader."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from replay.trace import TraceFile, iter_batches, open_trace
from replay.trace.schema import COLUMNS

if TYPE_CHECKING:
    from pathlib import Path


def read_all(path: Path) -> tuple[TraceFile, dict[str, np.ndarray]]:
    trace = open_trace(path)
    batches = list(iter_batches(trace))
    fields = COLUMNS
    if not batches:
        return trace, {f: np.empty(0) for f in fields}
    cols = {f: np.concatenate([getattr(b, f) for b in batches]) for f in fields}
    return trace, cols
