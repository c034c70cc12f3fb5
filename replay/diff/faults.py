"""The fault-level difference of two runs: which faults only one run took, and which changed.

Faults are matched on (t_ns, vm, vcpu, gfn). Runs of one trace match on the trace row as well,
which is the same key made unique (a vCPU can touch one MMIO gfn twice in one nanosecond); runs
of different traces (``--force``) match the n-th fault of a key in A with the n-th in B.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from replay._schemas import load_schema
from replay.mmu.config import ATTRIBUTIONS, CAUSES, REFILLS
from replay.run.load import RunFormatError
from replay.run.schema import FAULTS_FILE

if TYPE_CHECKING:
    from pathlib import Path

    import polars as pl

    from replay.run.load import RunDir

KEY = ("t_ns", "vm", "vcpu", "gfn")
ENUMS = ("cause", "refill", "attribution")
DETAIL = ("leaf_level", "new_sps", "relinked_sps", "recycled_sps", "pages_refilled", "est_ns")
DIFF_SCHEMA = load_schema("diff.v1")
CHANGES: tuple[str, ...] = tuple(DIFF_SCHEMA["enums"]["change"])
"""``only_a``/``only_b``: one run faulted, the other hit; ``attribution_changed``: both faulted,
attributed differently; ``detail_changed``: same attribution, but cause, refill, SPs, refilled
pages or cost differ (``schemas/diff.v1.json``)."""
ABSENT = "(no fault)"
ENUM_NAMES: dict[str, tuple[str, ...]] = {
    "cause": CAUSES,
    "refill": REFILLS,
    "attribution": ATTRIBUTIONS,
}


@dataclass(frozen=True)
class FaultDiff:
    """The changed faults (a polars frame) and how many of each change there are."""

    frame: pl.DataFrame
    counts: dict[str, int]
    transitions: list[dict[str, Any]]
    """Changed faults by (attribution in A, attribution in B), largest first."""
    same: int
    keyed_on: str

    def to_json(self) -> dict[str, Any]:
        """The counts, as ``replay diff --json`` prints them."""
        return {
            "keyed_on": self.keyed_on,
            "unchanged": self.same,
            "changed": self.counts,
            "attribution_transitions": self.transitions,
        }


def enum_codes(column: Any, names: tuple[str, ...], where: str) -> np.ndarray:
    """Codes (positions in ``names``) of a dictionary-encoded or string Arrow column."""
    import pyarrow as pa

    out = []
    for chunk in column.chunks:
        encoded = (
            chunk if pa.types.is_dictionary(chunk.type) else pa.compute.dictionary_encode(chunk)
        )
        values = encoded.dictionary.to_pylist()
        unknown = [v for v in values if v not in names]
        if unknown:
            raise RunFormatError(
                f"{where}: unknown value {unknown[0]!r}; expected one of {', '.join(names)}"
            )
        lookup = np.array([names.index(v) for v in values], dtype=np.int8)
        out.append(lookup[encoded.indices.to_numpy(zero_copy_only=False)])
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int8)


def _read(run: RunDir, suffix: str) -> pl.DataFrame:
    """A run's fault rows, enumerations as int8 codes, non-key columns suffixed."""
    import polars as pl
    import pyarrow.parquet as pq

    path = run.file(FAULTS_FILE)
    cols = ["row", *KEY, *ENUMS, *DETAIL]
    try:
        table = pq.read_table(path, columns=cols)
    except (OSError, ValueError, KeyError) as exc:
        raise RunFormatError(f"{path} cannot be read as a fault table ({exc})") from None
    data: dict[str, Any] = {}
    for name in cols:
        column = table.column(name)
        if name in ENUMS:
            column = enum_codes(column, ENUM_NAMES[name], f"{path} column {name}")
        data[name if name in KEY else f"{name}{suffix}"] = column
    return pl.DataFrame(data)


def fault_diff(a: RunDir, b: RunDir) -> FaultDiff:
    """Match every fault of A with B's and classify the differences."""
    import polars as pl

    same_trace = a.fingerprint == b.fingerprint and a.fingerprint != ""
    fa, fb = _read(a, "_a"), _read(b, "_b")
    if same_trace:
        fa = fa.with_columns(pl.col("row_a").alias("_k"))
        fb = fb.with_columns(pl.col("row_b").alias("_k")).rename({c: f"{c}_bk" for c in KEY})
        on = ["_k"]
    else:
        fa = fa.with_columns(pl.int_range(pl.len()).over(KEY).alias("_k"))
        fb = fb.with_columns(pl.int_range(pl.len()).over(KEY).alias("_k"))
        on = [*KEY, "_k"]
    joined = fa.join(fb, on=on, how="full", coalesce=True)
    if same_trace:
        # Faults only B took have their key columns on B's side only.
        joined = joined.with_columns(pl.coalesce(c, f"{c}_bk").alias(c) for c in KEY)
    detail_differs = pl.any_horizontal(
        pl.col(f"{c}_a").ne_missing(pl.col(f"{c}_b")) for c in ("cause", "refill", *DETAIL)
    )
    change = (
        pl.when(pl.col("row_b").is_null())
        .then(0)
        .when(pl.col("row_a").is_null())
        .then(1)
        .when(pl.col("attribution_a") != pl.col("attribution_b"))
        .then(2)
        .when(detail_differs)
        .then(3)
        .otherwise(-1)
        .cast(pl.Int8)
        .alias("change")
    )
    columns = [
        "change",
        *KEY,
        *(f"{c}{s}" for c in ("row", *ENUMS, *DETAIL) for s in ("_a", "_b")),
    ]
    classified = joined.with_columns(change)
    kinds = np.bincount(classified["change"].to_numpy() + 1, minlength=len(CHANGES) + 1)
    changed = classified.filter(pl.col("change") >= 0).select(columns)
    changed = changed.sort(pl.coalesce("row_a", "row_b"))
    counts = {name: int(kinds[i + 1]) for i, name in enumerate(CHANGES)}
    trans = (
        changed.filter(pl.col("change") != CHANGES.index("detail_changed"))
        .group_by("attribution_a", "attribution_b")
        .len()
    )
    names = ENUM_NAMES["attribution"]
    tallies = sorted(
        (
            (-int(n), ABSENT if ra is None else names[ra], ABSENT if rb is None else names[rb])
            for ra, rb, n in trans.iter_rows()
        )
    )
    transitions = [{"a": ra, "b": rb, "faults": -n} for n, ra, rb in tallies]
    return FaultDiff(changed, counts, transitions, int(kinds[0]), "row" if same_trace else "key")


def fault_diff_table(diff: FaultDiff) -> Any:
    """The changed faults as an Arrow table, enumerations dictionary-encoded."""
    import pyarrow as pa

    table = diff.frame.to_arrow()
    arrays = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        names = CHANGES if name == "change" else ENUM_NAMES.get(name[:-2])
        if names is not None:
            column = pa.DictionaryArray.from_arrays(column.cast(pa.int8()), pa.array(names))
        arrays[name] = column
    return pa.table(arrays)


def write_fault_diff(diff: FaultDiff, path: Path, a: RunDir, b: RunDir) -> None:
    """Write the changed faults to ``path`` (atomically), stamped with both runs."""
    import json

    import pyarrow.parquet as pq

    from replay.atomic import atomic_output

    table = fault_diff_table(diff)
    stamp = {
        "schema_version": DIFF_SCHEMA["schema_version"],
        "a": {"path": str(a.path), "policy": a.policy, "trace_fingerprint": a.fingerprint},
        "b": {"path": str(b.path), "policy": b.policy, "trace_fingerprint": b.fingerprint},
        "keyed_on": diff.keyed_on,
    }
    key = str(DIFF_SCHEMA["metadata_key"]).encode()
    table = table.replace_schema_metadata({key: json.dumps(stamp).encode()})
    with atomic_output(path, "fault-level diff") as tmp:
        pq.write_table(table, tmp, compression="zstd")
