from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from replay.errors import InputFileError, TraceDataError, TraceSchemaError, TraceVersionError
from replay.trace import count_mmio, iter_batches, open_trace
from replay.trace.schema import EVENT_CODE, FOOTER_KEY, OP_CODE, SOURCE_CODE, TraceMeta
from tests.builders import access, reclaim, region, two_vm_meta, write_rows

Builder = Callable[..., Path]


def test_batches_come_back_as_written(trace_builder: Builder) -> None:
    path = trace_builder(
        [
            access(10, gpa=0x2000, op="write"),
            reclaim(20, "drop_caches", 0),
            {"t_ns": 30, "event": "shrink", "nr_to_scan": 128},
            {"t_ns": 40, "event": "unmap", "vm": 5, "gpa": 4 << 30, "len": 8192},
            {"t_ns": 40, "event": "zap_all", "vm": 0},
            access(50, vm=5, vcpu=0, gpa=0xFEE00000, op="exec"),
        ]
    )
    trace = open_trace(path)
    assert trace.num_rows == 6
    (batch,) = list(iter_batches(trace))
    assert batch.t_ns.tolist() == [10, 20, 30, 40, 40, 50]
    assert batch.event.tolist() == [
        EVENT_CODE[k] for k in ("access", "reclaim", "shrink", "unmap", "zap_all", "access")
    ]
    assert batch.op[[0, 5]].tolist() == [OP_CODE["write"], OP_CODE["exec"]]
    assert batch.source[1] == SOURCE_CODE["drop_caches"]
    assert batch.priority[1] == 0
    assert batch.nr_to_scan[2] == 128
    assert batch.len[3] == 8192
    assert (
        count_mmio(trace.meta, batch) == 1
    )  # 0xFEE00000 is past VM 5's first slot, before its second


def test_small_batches_carry_the_order_check_across(trace_builder: Builder) -> None:
    path = trace_builder([access(t) for t in (1, 2, 3, 4, 5)])
    sizes = [len(b) for b in iter_batches(open_trace(path), batch_rows=2)]
    assert sizes == [2, 2, 1]


def test_unsorted_trace_names_the_row(trace_builder: Builder) -> None:
    path = trace_builder([access(100), access(200), access(150), access(300)])
    with pytest.raises(TraceDataError, match=r"row 2: t_ns goes backwards \(150 after 200\); sort"):
        list(iter_batches(open_trace(path)))


def test_unsorted_across_batches_names_the_row(trace_builder: Builder) -> None:
    path = trace_builder([access(100), access(200), access(150), access(300)])
    with pytest.raises(TraceDataError, match=r"row 2: t_ns goes backwards"):
        list(iter_batches(open_trace(path), batch_rows=2))


def test_unknown_vm_is_rejected(trace_builder: Builder) -> None:
    path = trace_builder([access(1), access(2, vm=3)])
    with pytest.raises(
        TraceDataError, match=r"row 1: VM 3 is not in the footer's VM table \(known: 0, 5\)"
    ):
        list(iter_batches(open_trace(path)))


def test_vcpu_beyond_the_vm_is_rejected(trace_builder: Builder) -> None:
    path = trace_builder([access(1, vm=0, vcpu=1), access(2, vm=5, vcpu=1)])
    with pytest.raises(TraceDataError, match=r"row 1: vCPU 1 of VM 5 is beyond the VM's 1 vCPUs"):
        list(iter_batches(open_trace(path)))


def test_event_missing_a_required_column(trace_builder: Builder) -> None:
    path = trace_builder([{"t_ns": 1, "event": "reclaim", "source": "kswapd"}])
    with pytest.raises(TraceDataError, match=r"row 0: reclaim event has no priority"):
        list(iter_batches(open_trace(path)))


def test_priority_out_of_range(trace_builder: Builder) -> None:
    path = trace_builder([reclaim(1, priority=13)])
    with pytest.raises(TraceDataError, match=r"row 0: priority 13 is out of range"):
        list(iter_batches(open_trace(path)))


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="does not exist"):
        open_trace(tmp_path / "nope.parquet")


def test_csv_renamed_parquet(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    path.write_text("t_ns,event\n1,access\n")
    with pytest.raises(InputFileError, match="not a readable Parquet file"):
        open_trace(path)


def test_parquet_without_footer_key(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"t_ns": [1]}), path)
    with pytest.raises(TraceSchemaError, match=r"no 'replay\.trace' footer"):
        open_trace(path)


def _rewrite(src: Path, dst: Path, table: pa.Table, footer: bytes | None = None) -> Path:
    raw = pq.read_metadata(src).metadata
    meta = {FOOTER_KEY.encode(): footer if footer is not None else raw[FOOTER_KEY.encode()]}
    pq.write_table(table.replace_schema_metadata(meta), dst)
    return dst


def test_missing_column(trace_builder: Builder, tmp_path: Path) -> None:
    src = trace_builder([access(1)])
    table = pq.read_table(src).drop_columns(["op"])
    path = _rewrite(src, tmp_path / "m.parquet", table)
    with pytest.raises(TraceSchemaError, match="column 'op' is missing"):
        open_trace(path)


def test_wrong_column_type(trace_builder: Builder, tmp_path: Path) -> None:
    src = trace_builder([access(1)])
    table = pq.read_table(src)
    table = table.set_column(table.schema.get_field_index("vm"), "vm", pa.array([0.5]))
    path = _rewrite(src, tmp_path / "w.parquet", table)
    with pytest.raises(TraceSchemaError, match="column 'vm' has type double"):
        open_trace(path)


def test_future_schema_version(trace_builder: Builder, tmp_path: Path) -> None:
    src = trace_builder([access(1)])
    footer = two_vm_meta().to_json().replace('"schema_version":2', '"schema_version":3')
    path = _rewrite(src, tmp_path / "v.parquet", pq.read_table(src), footer.encode())
    with pytest.raises(TraceVersionError, match="schema version 3 is not supported"):
        open_trace(path)


def test_plain_strings_and_wider_integers_are_accepted(
    trace_builder: Builder, tmp_path: Path
) -> None:
    """Other writers (polars defaults) produce plain strings and int64 columns."""
    src = trace_builder([access(1, vm=5, gpa=0x3000, op="write"), reclaim(2)])
    table = pq.read_table(src)
    for name in ("event", "op", "source"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table.column(name).cast(pa.string()))
    for name in ("vm", "vcpu", "gpa"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, table.column(name).cast(pa.int64()))
    path = _rewrite(src, tmp_path / "p.parquet", table)
    (batch,) = list(iter_batches(open_trace(path)))
    assert batch.vm.dtype == np.uint16
    assert batch.vm.tolist() == [5, 0]
    assert batch.op[0] == OP_CODE["write"]  # row 1 (reclaim) has no op: its slot is unspecified
    assert batch.event.tolist() == [EVENT_CODE["access"], EVENT_CODE["reclaim"]]


def test_unknown_enum_value(trace_builder: Builder, tmp_path: Path) -> None:
    src = trace_builder([access(1), access(2)])
    table = pq.read_table(src)
    i = table.schema.get_field_index("op")
    table = table.set_column(i, "op", pa.array(["read", "fetch"]))
    path = _rewrite(src, tmp_path / "e.parquet", table)
    with pytest.raises(
        TraceDataError, match="row 1: op 'fetch' is unknown; use one of read, write, exec"
    ):
        list(iter_batches(open_trace(path)))


def test_value_too_wide_for_the_column(trace_builder: Builder, tmp_path: Path) -> None:
    src = trace_builder([access(1)])
    table = pq.read_table(src)
    i = table.schema.get_field_index("vm")
    table = table.set_column(i, "vm", pa.array([70000], type=pa.int64()))
    path = _rewrite(src, tmp_path / "x.parquet", table)
    with pytest.raises(TraceDataError, match="row 0: vm 70000 does not fit uint16"):
        list(iter_batches(open_trace(path)))


def test_a_value_too_wide_is_named_by_its_own_row(trace_builder: Builder, tmp_path: Path) -> None:
    """Issue 12 item 17: a type error named the batch's first row, not the bad one."""
    src = trace_builder([access(t) for t in range(1, 8)])
    table = pq.read_table(src)
    i = table.schema.get_field_index("vm")
    table = table.set_column(i, "vm", pa.array([0, 0, 0, 0, 0, 70000, 0], type=pa.int64()))
    path = _rewrite(src, tmp_path / "x.parquet", table)
    with pytest.raises(TraceDataError, match="row 5: vm 70000 does not fit uint16"):
        list(iter_batches(open_trace(path)))


@pytest.mark.parametrize("where", ["header", "middle"])
def test_damaged_pages_are_one_clear_error(tmp_path: Path, where: str) -> None:
    """Issue 12 item 8: a trace whose footer is intact but whose pages are damaged was a
    thrift / ZSTD OSError traceback from inside the row-group read."""
    sample = Path(__file__).resolve().parents[2] / "traces" / "samples" / "quick.parquet"
    data = bytearray(sample.read_bytes())
    at = 4 if where == "header" else len(data) // 3
    data[at : at + 4096] = bytes(range(256)) * 16  # overwritten page bytes
    path = tmp_path / "damaged.parquet"
    path.write_bytes(bytes(data))
    with pytest.raises((TraceDataError, TraceSchemaError)) as info:
        for _ in iter_batches(open_trace(path), read_ahead=True):
            pass
    assert "damaged.parquet" in str(info.value)
    assert "\n" not in str(info.value)


def test_an_iterator_still_held_at_exit_has_its_worker_stopped(tmp_path: Path) -> None:
    """A read-ahead iterator that a caller stopped early and kept: its worker used to go on
    decoding while Python tore down at exit, and the process died of SIGSEGV (in a quarter to
    a third of such exits with 10 M- and 50 M-access traces). The worker must be stopped
    before that: an exit hook registered before the iterator runs after the reader's own, and
    finds no reader thread left."""
    import subprocess
    import sys

    from replay.synth import generate, load_scenario

    trace = tmp_path / "t.parquet"
    generate(load_scenario("quick", accesses=20_000), trace)
    code = (
        "import atexit, threading\n"
        "from replay.trace import iter_batches, open_trace\n"
        "def report():\n"
        "    alive = [t for t in threading.enumerate() if t.name == 'trace-reader']\n"
        "    print('alive' if alive else 'stopped', flush=True)\n"
        "atexit.register(report)\n"
        f"held = iter_batches(open_trace({str(trace)!r}), batch_rows=500, read_ahead=True)\n"
        "first = next(held)\n"  # the worker has more batches to hand on than the queue holds
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.strip() == "stopped"


def test_an_iterator_closed_on_its_own_reader_thread_stops_cleanly() -> None:
    """An iterator dropped after an error sits in a reference cycle (the traceback holds the
    frame that holds it), and the cyclic collector may finalize it on any thread, its own
    reader thread included. Closing it there used to try to join the reader thread from
    itself: a RuntimeError reported as an unraisable exception (seen once in CI, on an
    engine error with processes)."""
    import threading

    from replay.trace.reader import prefetched

    consumed = threading.Event()
    held: list[Generator[int, None, None]] = []
    closing_errors: list[BaseException] = []
    closed_on: list[threading.Thread] = []

    def numbers() -> Iterator[int]:
        for i in range(100):
            if i == 2:  # on the reader thread, once the consumer has gone away
                consumed.wait(timeout=10)
                closed_on.append(threading.current_thread())
                try:
                    held[0].close()
                except BaseException as exc:
                    closing_errors.append(exc)
            yield i

    it = prefetched(numbers(), depth=2)
    held.append(it)
    assert next(it) == 0
    consumed.set()
    for _ in range(200):
        if closed_on:
            break
        threading.Event().wait(0.05)
    assert [t.name for t in closed_on] == ["trace-reader"]
    closed_on[0].join(timeout=5)
    assert closing_errors == []
    assert not closed_on[0].is_alive()


@pytest.mark.parametrize("ends_with", ["end", "error"])
def test_a_consumer_that_stops_early_stops_a_worker_with_nothing_left_to_read(
    ends_with: str,
) -> None:
    """The worker has read everything and waits to hand on the end (or an error) while the
    queue is full of batches nobody will take: closing the iterator must stop it at once.
    It used to wait on the full queue forever, and every close waited five seconds for it
    (seen after every engine error or interrupt with read-ahead on)."""
    import threading
    import time

    from replay.trace.reader import prefetched

    workers: list[threading.Thread] = []
    exhausted = threading.Event()

    def source() -> Iterator[int]:
        workers.append(threading.current_thread())
        yield from range(3)  # one taken, two fill the queue
        exhausted.set()
        if ends_with == "error":
            raise ValueError("the source's own error")

    it = prefetched(source(), depth=2)
    assert next(it) == 0
    assert exhausted.wait(timeout=10)
    time.sleep(0.2)  # the worker now waits to hand on the end with the queue full
    t0 = time.monotonic()
    it.close()
    assert time.monotonic() - t0 < 2
    workers[0].join(timeout=2)
    assert not workers[0].is_alive()


def _sampled_meta(coverage: str = "faults+sampled") -> TraceMeta:
    meta = two_vm_meta()
    return TraceMeta(meta.vms, coverage, meta.provenance)


def test_region_rows_come_back_as_written(trace_builder: Builder) -> None:
    rows = [
        access(10, gpa=0x2000),
        region(20, vm=5, gpa=4 << 30, length=2 << 20, nr_accesses=7),
        {**region(30, gpa=0x10_0000, length=4096, nr_accesses=0), "age": 12},
    ]
    (batch,) = list(iter_batches(open_trace(trace_builder(rows, _sampled_meta()))))
    assert batch.event.tolist() == [EVENT_CODE[k] for k in ("access", "region", "region")]
    assert batch.host.tolist() == [1, 2]
    assert batch.len[1:].tolist() == [2 << 20, 4096]
    assert batch.nr_accesses[1:].tolist() == [7, 0]
    assert batch.window_ns[1:].tolist() == [100_000_000] * 2
    assert batch.sample_ns[1:].tolist() == [5_000_000] * 2
    assert batch.age[2] == 12


def test_a_version_1_trace_reads_with_the_new_columns_null(
    trace_builder: Builder, tmp_path: Path
) -> None:
    src = trace_builder([access(1), reclaim(2), access(3, vm=5)])
    table = pq.read_table(src).drop_columns(["nr_accesses", "window_ns", "sample_ns", "age"])
    footer = two_vm_meta().to_json().replace('"schema_version":2', '"schema_version":1')
    path = _rewrite(src, tmp_path / "v1.parquet", table, footer.encode())
    trace = open_trace(path)
    assert trace.meta.schema_version == 1
    for batch_rows in (1, 1 << 20):  # streamed and whole row groups
        batches = list(iter_batches(trace, batch_rows=batch_rows))
        assert sum(len(b) for b in batches) == 3
        assert all(len(b.nr_accesses) == len(b) for b in batches)
    # A version 2 file must have them.
    path2 = _rewrite(src, tmp_path / "v2.parquet", table)
    with pytest.raises(TraceSchemaError, match="column 'nr_accesses' is missing"):
        open_trace(path2)


def test_rewriting_a_version_1_trace_writes_version_2(tmp_path: Path) -> None:
    meta = TraceMeta(two_vm_meta().vms, "all-accesses", {"generator": "tests"}, schema_version=1)
    path = write_rows(tmp_path / "w.parquet", [access(1)], meta)
    assert open_trace(path).meta.schema_version == 2


@pytest.mark.parametrize(
    ("row", "coverage", "message"),
    [
        (region(5, gpa=0x1800), "sampled", "row 0: region gpa is not page aligned"),
        (region(5, length=0), "sampled", "row 0: region len is not a positive multiple of 4096"),
        (region(5, length=6000), "sampled", "region len is not a positive multiple"),
        (region(5, sample_ns=0), "sampled", "region sample_ns is 0 or above window_ns"),
        (region(5, window_ns=10, sample_ns=20), "sampled", "sample_ns is 0 or above window_ns"),
        (region(5, nr_accesses=21), "sampled", "region nr_accesses is above window_ns / sample_ns"),
        (region(5, gpa=(1 << 30) - 4096, length=8192), "sampled", "not inside one memslot"),
        (region(5, vm=5, gpa=2 << 30), "sampled", "not inside one memslot"),
        (region(5, vm=3), "sampled", "VM 3 is not in the footer's VM table"),
        (region(5), "faults-only", "a region row in a 'faults-only' trace"),
        (region(5), "all-accesses", "a region row in a 'all-accesses' trace"),
        (access(5), "sampled", "an access row in a 'sampled' trace"),
        ({**region(5), "nr_accesses": None}, "sampled", "region event has no nr_accesses"),
        ({**region(5), "window_ns": None}, "sampled", "region event has no window_ns"),
    ],
)
def test_bad_region_rows_are_named(
    trace_builder: Builder, row: dict[str, object], coverage: str, message: str
) -> None:
    path = trace_builder(
        [access(1), row] if coverage != "sampled" else [row], _sampled_meta(coverage)
    )
    with pytest.raises(TraceDataError, match=message):
        list(iter_batches(open_trace(path)))


def test_a_region_row_in_a_version_1_trace_is_refused(
    trace_builder: Builder, tmp_path: Path
) -> None:
    src = trace_builder([region(1)], _sampled_meta("sampled"))
    footer = two_vm_meta().to_json().replace('"schema_version":2', '"schema_version":1')
    path = _rewrite(src, tmp_path / "v1.parquet", pq.read_table(src), footer.encode())
    with pytest.raises(
        TraceDataError, match=r"region row in a 'all-accesses' trace \(schema version 1"
    ):
        list(iter_batches(open_trace(path)))
