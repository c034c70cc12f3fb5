"""Inputs for the hostile tests, made from the project's public files only.

Traces are built and damaged with pyarrow from the bundled sample (``traces/samples/quick.parquet``)
and its footer, as any other tool that writes Parquet could; logs come from the real kernel
output in ``traces/logs/``. Nothing here imports the ``replay`` package, so the tests survive a
restructuring of its internals.
"""

from __future__ import annotations

import io
import json
from functools import cache
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.hostile.runner import LOGS, SAMPLE

if TYPE_CHECKING:
    from pathlib import Path

FOOTER_KEY = b"replay.trace"
INT64_MAX = (1 << 63) - 1
GiB = 1 << 30


@cache
def sample_table() -> pa.Table:
    """The bundled sample trace's rows (200,018 rows, two VMs)."""
    return pq.read_table(SAMPLE)


@cache
def sample_footer() -> dict[str, Any]:
    """The bundled sample's footer document (``replay.trace``)."""
    raw = pq.read_metadata(SAMPLE).metadata[FOOTER_KEY]
    doc: dict[str, Any] = json.loads(raw)
    return doc


def footer() -> dict[str, Any]:
    """A fresh copy of the sample's footer, to mutate."""
    doc: dict[str, Any] = json.loads(json.dumps(sample_footer()))
    return doc


@cache
def small_table() -> pa.Table:
    """Every host event of the sample and every 50th access: 4,018 rows in time order."""
    import numpy as np

    table = sample_table()
    event = table.column("event").to_pylist()
    keep = np.array([e != "access" or i % 50 == 0 for i, e in enumerate(event)])
    return table.filter(pa.array(keep))


def trace_bytes(
    table: pa.Table | None = None,
    footer_doc: dict[str, Any] | str | bytes | None = None,
    **write_options: Any,
) -> bytes:
    """A Parquet file of ``table`` (default: :func:`small_table`) with a footer, as bytes.

    ``footer_doc`` is the footer as a document (dumped to JSON), as text, or as raw bytes;
    None keeps the sample's.
    """
    table = small_table() if table is None else table
    if footer_doc is None:
        raw = json.dumps(sample_footer()).encode()
    elif isinstance(footer_doc, dict):
        raw = json.dumps(footer_doc).encode()
    elif isinstance(footer_doc, str):
        raw = footer_doc.encode()
    else:
        raw = footer_doc
    sink = io.BytesIO()
    options = {"compression": "zstd", **write_options}
    pq.write_table(table.replace_schema_metadata({FOOTER_KEY: raw}), sink, **options)
    return sink.getvalue()


def rows_table(rows: list[dict[str, Any]], schema: pa.Schema | None = None) -> pa.Table:
    """A trace table of ``rows`` (dicts of column values) in the sample's schema."""
    schema = schema or sample_table().schema.remove_metadata()
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    arrays = []
    for f in schema:
        if pa.types.is_dictionary(f.type):
            arrays.append(pa.array(columns[f.name], pa.string()).dictionary_encode())
        else:
            arrays.append(pa.array(columns[f.name], f.type))
    return pa.Table.from_arrays(
        arrays, schema=pa.schema([(f.name, a.type) for f, a in zip(schema, arrays, strict=True)])
    )


def access(
    t_ns: int, vm: int = 0, vcpu: int = 0, gpa: int = 0x1000, op: str = "read"
) -> dict[str, Any]:
    """An access row."""
    return {"t_ns": t_ns, "event": "access", "vm": vm, "vcpu": vcpu, "gpa": gpa, "op": op}


def reclaim(t_ns: int, source: str = "kswapd", priority: int = 12) -> dict[str, Any]:
    """A reclaim pass row."""
    return {"t_ns": t_ns, "event": "reclaim", "source": source, "priority": priority, "nid": 0}


def unmap(t_ns: int, vm: int, gpa: int, length: int) -> dict[str, Any]:
    """A host unmap row."""
    return {"t_ns": t_ns, "event": "unmap", "vm": vm, "gpa": gpa, "len": length}


def log_text(name: str) -> str:
    """A real kernel log of ``traces/logs``."""
    return (LOGS / name).read_text()


def log_lines(name: str) -> list[str]:
    """A real kernel log's lines, without their newlines."""
    return log_text(name).splitlines()


def event_lines(name: str, event: str) -> list[str]:
    """The lines of a real log that carry ``event``."""
    return [ln for ln in log_lines(name) if f" {event}: " in ln or f":{event}: " in ln]


def read_trace_rows(path: Path) -> pa.Table:
    """A written trace's rows (to check what a command wrote)."""
    return pq.read_table(path)
