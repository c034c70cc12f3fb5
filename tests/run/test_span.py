"""The span check before a replay: bucket widths, the bucket limit, times and lying footers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pyarrow.parquet as pq
import pytest

from replay.errors import TraceDataError
from replay.run.driver import run_policies
from replay.run.span import (
    MAX_BUCKETS,
    TIME_LIMIT_NS,
    BucketWidthError,
    Span,
    bucket_ns_of,
    check_span,
)
from replay.trace.reader import open_trace
from tests.builders import access, reclaim, write_rows

if TYPE_CHECKING:
    from pathlib import Path


@pytest.mark.parametrize(
    ("ms", "ns"),
    [(100.0, 100_000_000), (0.1, 100_000), (0.000001, 1), (0.0015, 1_500), (9e12, 9 * 10**18)],
)
def test_bucket_widths_in_whole_ns(ms: float, ns: int) -> None:
    assert bucket_ns_of(ms) == ns


@pytest.mark.parametrize("ms", [math.nan, math.inf, -math.inf, -1.0, 0.0, 1e-7, 1.5e-6, 1e30])
def test_bucket_widths_refused(ms: float) -> None:
    with pytest.raises(BucketWidthError, match="--bucket-ms"):
        bucket_ns_of(ms)


def _trace(tmp_path: Path, last_t: int, *, statistics: bool = True) -> Path:
    path = write_rows(tmp_path / "t.parquet", [access(1_000), reclaim(2_000), access(last_t)])
    if not statistics:
        footer = pq.read_metadata(path).metadata
        table = pq.read_table(path).replace_schema_metadata(footer)
        pq.write_table(table, path, write_statistics=False)
    return path


@pytest.mark.parametrize("statistics", [True, False])
def test_span_from_statistics_or_the_column(tmp_path: Path, statistics: bool) -> None:
    trace = open_trace(_trace(tmp_path, 5_000_000, statistics=statistics))
    stats = pq.read_metadata(trace.path).row_group(0).column(0).statistics
    assert (stats is not None and stats.has_min_max) == statistics
    assert check_span(trace, 100) == Span(1_000, 5_000_000)


def test_too_many_buckets_names_the_width_that_fits(tmp_path: Path) -> None:
    """(span // width + 1) buckets: 10**9 ns at 100 ns is 10**7 buckets; 1001 ns gives
    999,000 + 1 buckets, the smallest width within the limit of a million."""
    trace = open_trace(_trace(tmp_path, 1_000 + 10**9))
    with pytest.raises(TraceDataError) as err:
        check_span(trace, 100)
    assert "10,000,001 timeline buckets of 0.0001 ms" in str(err.value)
    assert "use --bucket-ms 0.001001 or more" in str(err.value)
    assert MAX_BUCKETS == 1_000_000
    assert (10**9) // 1001 + 1 <= MAX_BUCKETS < (10**9) // 1000 + 1
    assert check_span(trace, 1001) == Span(1_000, 1_000 + 10**9)


def test_a_time_past_the_limit_is_refused(tmp_path: Path) -> None:
    """1.7e18 ns is within 2**61 (a wide bucket takes it); 2**61 + 1 is not, whatever the width."""
    assert check_span(open_trace(_trace(tmp_path, 17 * 10**17)), 10**13).last == 17 * 10**17
    with pytest.raises(TraceDataError, match=r"beyond \+-2\*\*61 ns"):
        check_span(open_trace(_trace(tmp_path, TIME_LIMIT_NS + 1)), (1 << 62) + 1)


def test_statistics_that_lie_are_caught_while_replaying(tmp_path: Path) -> None:
    """Row groups whose statistics understate the last time: the batch that holds it is
    refused, so the timeline never grows past the span that was checked."""
    path = _trace(tmp_path, 5_000_000)
    trace = open_trace(path)
    span = Span(1_000, 4_000_000)  # what a lying footer would say
    with pytest.raises(TraceDataError, match="row-group statistics"):
        span.check_batch(trace, 0, 1_000, 5_000_000)
    span.check_batch(trace, 0, 1_000, 4_000_000)


def test_run_policies_checks_the_span_before_replaying(tmp_path: Path) -> None:
    trace = open_trace(_trace(tmp_path, 1_000 + 10**9))
    with pytest.raises(TraceDataError, match="timeline buckets"):
        run_policies(trace, ("zap",), bucket_ns=100)
    replay = run_policies(trace, ("zap",), bucket_ns=10**6)
    assert len(replay.counts.accesses_by_bucket) == 1_001
