"""The shared batch ring (``replay.run.ring``): a batch comes out as it went in."""

from __future__ import annotations

import os

import numpy as np
import pytest

from replay.run.ring import COLUMNS, BatchRing, slot_bytes
from replay.synth import generate, load_scenario
from replay.trace import open_trace
from replay.trace.reader import EventBatch, iter_batches


def _same(got: EventBatch, want: EventBatch) -> None:
    assert got.start_row == want.start_row
    for name in COLUMNS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype, name
        assert np.array_equal(a, b), name
        # A broadcast constant (no memory behind it) stays one; a column of values is writable
        # as the reader gives it.
        assert (a.strides[0] == 0) == (b.strides[0] == 0), name
    assert np.array_equal(got.host, want.host)


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> list[EventBatch]:
    """Batches of 700 rows of a trace with host events and DAMON region rows."""
    path = tmp_path_factory.mktemp("ring") / "t.parquet"
    generate(load_scenario("many-small-vms", seed=1, accesses=3_000), path)
    out = list(iter_batches(open_trace(path), batch_rows=700))
    assert len(out) > 4
    assert any(len(b.host) for b in out)
    assert any(getattr(b, c).strides[0] == 0 for b in out for c in COLUMNS)
    return out


def test_every_batch_comes_out_as_it_went_in(batches: list[EventBatch]) -> None:
    ring = BatchRing(2, slot_bytes(700))
    try:
        for k, batch in enumerate(batches):
            layout = ring.put(k % 2, batch)
            assert layout is not None
            _same(ring.take(layout), batch)
    finally:
        ring.close()


def test_a_forked_child_reads_what_the_parent_wrote(batches: list[EventBatch]) -> None:
    """The child reads through the inherited descriptor, without the parent's mapping."""
    ring = BatchRing(1, slot_bytes(700))
    layout = ring.put(0, batches[1])
    assert layout is not None
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the batch is whole
        code = 1
        try:
            ring.forget_mapping()
            _same(ring.take(layout), batches[1])
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    ring.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_copy_reuses_its_arrays_unless_a_batch_still_holds_them(
    batches: list[EventBatch],
) -> None:
    ring = BatchRing(2, slot_bytes(700))
    try:
        first = ring.put(0, batches[0])
        second = ring.put(1, batches[1])
        assert first is not None
        assert second is not None
        got = ring.take(first)
        kept = got.t_ns[10:20]  # as an engine that kept a view past its batch would
        before = kept.copy()
        del got
        again = ring.take(second)
        # Its array was still referred to: the second batch went into a fresh one.
        assert not np.shares_memory(again.t_ns, kept)
        assert np.array_equal(kept, before)
        owner = id(again.t_ns.base)  # an id: a reference would keep it from reuse
        del again
        third = ring.take(first)  # nothing holds the second's arrays: they are reused
        assert id(third.t_ns.base) == owner
        _same(third, batches[0])
    finally:
        ring.close()


def test_a_batch_larger_than_a_slot_is_refused(batches: list[EventBatch]) -> None:
    """``put`` says so (the batch then goes whole through the pipe), and writes nothing."""
    ring = BatchRing(1, slot_bytes(100))
    try:
        assert ring.put(0, batches[0]) is None
    finally:
        ring.close()
