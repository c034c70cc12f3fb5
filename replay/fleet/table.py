"""The fleet table: one row per (trace, sweep point, policy), every run total a column.

``fleet.parquet`` holds it; ``fleet.json``'s distributions, worst traces and frontier are
computed from it. Rows are sorted (trace name, fingerprint, sweep point, policy) and hold no
timing, so the same fleet gives the same table however its jobs were scheduled or resumed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import polars as pl

    from replay.fleet.jobs import Job

ID_COLUMNS = ("trace", "fingerprint", "source", "vms", "vcpus", "point")
"""Columns that name the row, before the sweep keys' columns."""
STATUS_COLUMNS = ("policy", "status", "error")


def flatten(totals: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested totals as ``{"faults_by_attribution.zapped_page_tables": 702, ...}``."""
    out: dict[str, Any] = {}
    for key, value in totals.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def shrinker_stall_ns(totals: dict[str, Any]) -> int:
    """The estimated guest stall the shrinker caused (rule 18): its faults and its flushes."""
    by_attr = totals["stall_ns_by_attribution"]
    return int(by_attr["zapped_page_tables"] + by_attr["cache_eviction"] + totals["scan_flush_ns"])


def job_rows(
    job: Job, record: dict[str, Any] | None, error: str | None, point_index: int
) -> list[dict[str, Any]]:
    """The job's rows: from its record (``job.json``) when it succeeded, else failed rows."""
    base: dict[str, Any] = {
        "trace": job.trace.name,
        "fingerprint": job.trace.fingerprint,
        "source": job.trace.source,
        "vms": record["vms"] if record else None,
        "vcpus": record["vcpus"] if record else None,
        "point": job.point.id,
        **dict(job.point.values),
    }
    rows = []
    for order, policy in enumerate(job.policies):
        row = {**base, "policy": policy}
        if record is not None:
            totals = record["totals"][policy]
            row.update(status="ok", error=None, **flatten(totals))
            row["shrinker_stall_ns"] = shrinker_stall_ns(totals)
        else:
            row.update(status="failed", error=error)
        row["_order"] = (job.trace.name, job.trace.fingerprint, point_index, order)
        rows.append(row)
    return rows


def build_table(rows: list[dict[str, Any]], sweep_keys: list[str]) -> pl.DataFrame:
    """The fleet table from :func:`job_rows`' rows, in their stable order."""
    import polars as pl

    rows = sorted(rows, key=lambda r: r["_order"])
    metric_columns: list[str] = []
    for row in rows:
        for key in row:
            if key in metric_columns or key == "_order":
                continue
            if key in ID_COLUMNS or key in STATUS_COLUMNS or key in sweep_keys:
                continue
            metric_columns.append(key)
    columns = [*ID_COLUMNS, *sweep_keys, *STATUS_COLUMNS, *metric_columns]
    schema: dict[str, Any] = {
        "trace": pl.String,
        "fingerprint": pl.String,
        "source": pl.String,
        "vms": pl.Int64,
        "vcpus": pl.Int64,
        "point": pl.String,
        **dict.fromkeys(sweep_keys, pl.Int64),
        "policy": pl.String,
        "status": pl.String,
        "error": pl.String,
    }
    for name in metric_columns:
        values = [r.get(name) for r in rows]
        is_float = any(isinstance(v, float) for v in values)
        schema[name] = pl.Float64 if is_float or name == "stall_per_freed_page" else pl.Int64
    data = {c: [r.get(c) for r in rows] for c in columns}
    return pl.DataFrame(data, schema=schema)
