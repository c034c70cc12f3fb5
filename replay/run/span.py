"""The time a trace spans, checked before a replay: every per-time structure stays bounded.

A run's timeline is dense, one row per bucket from the trace's first time to its last, and so
are the per-bucket counts the driver and each policy's statistics keep while replaying (the
vCPU cache levels are sparse, but their keys count buckets too). One stray time stamp or a tiny
``--bucket-ms`` would make them gigabytes, so a replay first reads the trace's first and last
``t_ns`` (from the Parquet row groups' statistics, or from the column when they are missing)
and refuses a span of more than :data:`MAX_BUCKETS` buckets, saying which bucket width fits.
During the replay, every batch's times are checked to lie inside that span, so a footer whose
statistics lie cannot get past the bound either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from replay.errors import ReplayError, TraceDataError

if TYPE_CHECKING:
    import pyarrow.parquet as pq

    from replay.trace.reader import TraceFile

MAX_BUCKETS = 1_000_000
"""The most buckets a timeline may have. Measured, a bucket costs about 450 bytes over a run of
three policies (each policy's ten int64 counters while replaying, its timeline's sixteen columns
and their Arrow copy when written), so a million buckets add about 450 MB at most: below what
the replay of a trace that spans so many buckets needs for itself (a 1 M-access trace of 30 s
takes 480 MB), where an unbounded timeline reached tens of gigabytes. At the default 100 ms it
is 27.7 hours of trace; a longer trace takes a wider ``--bucket-ms``."""

TIME_LIMIT_NS = 1 << 61
"""Times a replay takes, in ns either side of 0 (about 73 years): within it a time plus a
fault's estimate (rule 18: costs of at most 10**9 ns times at most 2**31 pages refilled, so
below 2**62), a time less another, and the vCPUs' initial ``busy_until`` of -2**62 (rule 16)
all stay exact in int64."""

INT64_MAX = (1 << 63) - 1


class BucketWidthError(ReplayError):
    """A bucket width that is not a whole, positive, finite number of ns that fits in int64."""


def bucket_ns_of(bucket_ms: float, option: str = "--bucket-ms") -> int:
    """The bucket width in ns of a width in ms: finite, > 0, a whole number of ns, in int64.

    Raises
    ------
    BucketWidthError
        Naming ``option``, the value and what is allowed.
    """
    allowed = f"give a width of at least 0.000001 ms (1 ns) and at most {INT64_MAX / 1e6:.4g} ms"
    if not math.isfinite(bucket_ms) or bucket_ms <= 0:
        raise BucketWidthError(f"{option} {bucket_ms:g} must be a positive number; {allowed}")
    exact = bucket_ms * 1e6
    if exact >= INT64_MAX:
        raise BucketWidthError(f"{option} {bucket_ms:g} is too wide; {allowed}")
    ns = round(exact)
    # Floats such as 0.1 ms are not exact in binary: a width within rounding of a whole ns is one.
    if ns < 1 or abs(exact - ns) > 1e-6 * exact:
        raise BucketWidthError(
            f"{option} {bucket_ms:g} is not a whole number of ns ({exact:g} ns); {allowed}, "
            "in steps of 0.000001 ms"
        )
    return int(ns)


@dataclass(frozen=True)
class Span:
    """A trace's first and last ``t_ns``, checked against the bucket width."""

    first: int
    last: int

    def check_batch(self, trace: TraceFile, start_row: int, first: int, last: int) -> None:
        """A batch's first and last times (sorted: the reader checked) lie within the span."""
        if first < self.first or last > self.last:
            raise TraceDataError(
                f"trace {trace.path}: the rows from row {start_row} hold times outside "
                f"[{self.first}, {self.last}] that the file's row-group statistics give for "
                "t_ns; the file is damaged: re-create it (replay convert or replay synth)"
            )


def check_span(trace: TraceFile, bucket_ns: int) -> Span:
    """The trace's span, refused when its times or its bucket count break the bounds.

    A trace whose times cannot be read here has an empty span: its first batch is refused
    (unless the reader, reading it, says first what is wrong).

    Raises
    ------
    TraceDataError
        A time outside +-:data:`TIME_LIMIT_NS`, or more than :data:`MAX_BUCKETS` buckets of
        ``bucket_ns``: one line with the span, the bucket count and the smallest
        ``--bucket-ms`` that fits.
    """
    if not 1 <= bucket_ns <= INT64_MAX:
        raise BucketWidthError(f"a bucket width of {bucket_ns} ns is not in [1, 2**63-1]")
    ends = _first_and_last(trace)
    if ends is None:
        return Span(0, -1)
    first, last = ends
    for t in (first, last):
        if not -TIME_LIMIT_NS <= t <= TIME_LIMIT_NS:
            raise TraceDataError(
                f"trace {trace.path}: t_ns {t} is beyond +-2**61 ns (+-73 years), where the "
                "replay's time arithmetic stays exact in 64 bits; a stray time stamp? Fix or "
                "drop that row, or shift every t_ns toward 0 (only differences matter)"
            )
    buckets = (last - first) // bucket_ns + 1
    if buckets > MAX_BUCKETS:
        fits = (last - first) // MAX_BUCKETS + 1
        raise TraceDataError(
            f"trace {trace.path} spans {(last - first) / 1e9:,.9g} s (t_ns {first} to {last}): "
            f"{buckets:,} timeline buckets of {_ms(bucket_ns)} ms, more than the limit of "
            f"{MAX_BUCKETS:,}; use --bucket-ms {_ms(fits)} or more (or drop stray time stamps)"
        )
    return Span(first, last)


def _ms(ns: int) -> str:
    """``ns`` as a number of ms, exact (ns are 0.000001 ms) without trailing zeros."""
    whole, frac = divmod(ns, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".")


def _first_and_last(trace: TraceFile) -> tuple[int, int] | None:
    """The least and greatest ``t_ns`` of the trace.

    From the row groups' statistics where they have them, else from the column, read a row
    group at a time (memory bounded by one group). A row group that cannot be read is left
    out: the replay's reader names it as damaged.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(trace.path)
        md = pf.metadata
        column = md.schema.to_arrow_schema().get_field_index("t_ns")
    except (pa.ArrowException, OSError):
        return None  # open_trace read it a moment ago: the replay's reader will say what broke
    groups = range(md.num_row_groups)
    ends = [_stat_ends(md.row_group(g), column) or _read_ends(pf, g) for g in groups]
    known = [e for e in ends if e is not None]
    if not known:
        return None
    return min(e[0] for e in known), max(e[1] for e in known)


def _stat_ends(group: pq.RowGroupMetaData, column: int) -> tuple[int, int] | None:
    """A row group's least and greatest ``t_ns`` by its statistics, if it has them."""
    stats = group.column(column).statistics
    if group.num_rows == 0 or stats is None or not stats.has_min_max:
        return None
    low, high = stats.min, stats.max
    if not isinstance(low, int) or not isinstance(high, int):
        return None
    return low, high


def _read_ends(pf: pq.ParquetFile, group: int) -> tuple[int, int] | None:
    """A row group's least and greatest ``t_ns``, read from the column (None if unreadable)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        t = pf.read_row_group(group, columns=["t_ns"]).column(0)
    except (pa.ArrowException, OSError):
        return None
    ends = pc.min_max(t).as_py()
    if ends["min"] is None:  # no rows, or only nulls (the reader names the row)
        return None
    return int(ends["min"]), int(ends["max"])
